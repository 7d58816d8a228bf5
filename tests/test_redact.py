from hiergeo_plugin.core.redact import Redactor, mask_url, secrets_in_url


def test_mask_url_hides_keys_and_credentials_only():
    url = "https://bob:pw123@tiles.example.com/{z}/{x}/{y}.jpg?access_token=abc.def&format=jpg&KEY=zzz999"
    masked = mask_url(url)
    for secret in ("abc.def", "zzz999", "bob", "pw123"):
        assert secret not in masked
    assert "format=jpg" in masked and "{z}/{x}/{y}" in masked
    assert set(secrets_in_url(url)) == {"abc.def", "zzz999", "bob", "pw123"}


def test_redactor_masks_secrets_in_free_text_also_percent_encoded():
    r = Redactor(["https://h/{z}/{x}/{y}?token=a/b+c"])
    text = "failed GET https://h/1/2/3?token=a%2Fb%2Bc and token a/b+c; also ftp://u:p@x/"
    out = r.redact(text)
    assert "a/b+c" not in out and "a%2Fb%2Bc" not in out and "u:p@" not in out
