"""pip's side of an install: its environment (QGIS's proxy), its configuration (`pip config list`), whether an
index answers, and what of all that must be masked before a line is shown or kept.

A user's pip configuration may hold credentials (a token as user name, password, path segment or `?token=` of
an index URL, in pip.conf or PIP_INDEX_URL); pip passes the configured extra indexes on to the command line
(installer.pip_command says why), and pip prints its indexes and sometimes whole URLs. Every such line goes
through `masker` (the core's redactor, core/tiles/redact.py) before the dialog shows it or an InstallResult keeps it.
"""

from __future__ import annotations

import os

# Asking pip for its configuration is this module's job (bandit: B404).
import subprocess  # nosec B404
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..tiles import redact
from .pip_run import NO_WINDOW


def configured_pip_settings(python: str, env: Optional[Mapping[str, str]] = None) -> List[Tuple[str, str]]:
    """(key, value) pairs of `pip config list`: the user's, the site's and the global files and the PIP_*
    variables, as the pip that will run reads them ([] when pip cannot say)."""
    try:
        # Fixed arguments, no shell (bandit: B603).
        proc = subprocess.run(  # nosec B603
            [python, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            creationflags=NO_WINDOW,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    settings = []
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        settings.append((key.strip(), value.strip().strip("'\"")))
    return settings


def configured_pip_extra_indexes(
    python: str, env: Optional[Mapping[str, str]] = None, settings: Optional[Sequence[Tuple[str, str]]] = None
) -> List[str]:
    """The extra indexes in the user's pip configuration and PIP_EXTRA_INDEX_URL, as `pip config list` says."""
    urls: List[str] = []
    for key, value in configured_pip_settings(python, env) if settings is None else settings:
        if key.endswith(".extra-index-url"):
            urls.extend(url for url in value.split() if url not in urls)
    return urls


#: pip settings and variables whose values are URLs that may carry a credential (a token as user name, password,
#: path segment or query value), wherever pip or HierGeo may print them.
_URL_SETTINGS = ("index-url", "extra-index-url", "find-links", "proxy")
_URL_VARIABLES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_PROXY", "HTTP_PROXY", "HTTPS_PROXY")


def pip_secret_urls(settings: Sequence[Tuple[str, str]], env: Mapping[str, str]) -> List[str]:
    """Every URL in pip's configuration and environment that may carry a credential: what `masker` is told."""
    urls = [url for key, value in settings if key.rpartition(".")[2] in _URL_SETTINGS for url in value.split()]
    for name in _URL_VARIABLES:
        urls += (env.get(name) or env.get(name.lower()) or "").split()
    return [url for url in dict.fromkeys(urls) if "://" in url]


def masker(urls: Iterable[str] = (), public: Sequence[str] = ()) -> Callable[[str], str]:
    """A function that masks credentials in a line before it is shown or kept: the core's redactor
    (core/tiles/redact.py: every URL's user, password, token-like path segments and query values), told the secrets of
    `urls` (pip's configured indexes) so that they are masked wherever they appear. The `public` URLs (indexes
    that hold no credential) are shown as they are: the redactor would take PyTorch's "cu128" for a token."""
    redactor = redact.Redactor([url for url in urls if url not in public])

    def mask(text: str) -> str:
        kept = [(f"\x00{i}\x00", url) for i, url in enumerate(public) if url in text]
        for mark, url in kept:
            text = text.replace(url, mark)
        text = redactor.redact(text)
        for mark, url in kept:
            text = text.replace(mark, url)
        return text

    return mask


def shown_command(command: Sequence[str], mask: Callable[[str], str]) -> Tuple[str, ...]:
    """The command as it may be shown and kept: its URLs masked (an index's token); paths and pins as they are."""
    return tuple(mask(part) if "://" in part else part for part in command)


def index_reachable(url: str, env: Mapping[str, str], timeout: float = 20.0) -> bool:
    """Whether `url` answers at all (any HTTP status counts), through the proxy in `env` as pip would use it.

    Measured on a machine that cannot reach download.pytorch.org: pip retried the CPU index 5 times for every
    one of the 57 packages, about 430 s of a 700 s install spent waiting. One probe first saves that.
    """
    import urllib.error
    import urllib.request

    proxies = {k: env[f"{k}_proxy"] for k in ("http", "https") if env.get(f"{k}_proxy")}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies))
    try:
        # The URL is PyPI's or PyTorch's index (https), or one the caller chose (bandit: B310).
        with opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout):  # nosec B310
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except (OSError, ValueError):
        return False


def pip_environment(
    proxies: Optional[Mapping[str, str]] = None, base: Optional[Mapping[str, str]] = None
) -> Dict[str, str]:
    """The environment for pip: the current one plus QGIS's proxy as plain values.

    `proxies` maps "http"/"https"/"no" to a proxy URL (or the hosts that bypass it), as the adapter reads them from
    QGIS's settings; pip (requests) reads both spellings of the variables. PIP_USER=0: a user-wide `user = true`
    in pip's configuration cannot be combined with --target.
    """
    env = dict(os.environ if base is None else base)
    for scheme, value in (proxies or {}).items():
        if not value:
            continue
        name = f"{scheme.lower()}_proxy"
        env[name] = value
        env[name.upper()] = value
    env["PIP_USER"] = "0"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    env["PYTHONUNBUFFERED"] = "1"  # log lines arrive as pip writes them, not in 8 KB blocks
    return env
