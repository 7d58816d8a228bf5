"""core/install/installer.py for real: pip of the interpreter the finder picks (core/install/qgis_python.py, tests/core/install/test_qgis_python.py)
installs a small package from this machine's package index into a temporary folder, a fresh interpreter imports it
from there; Cancel kills pip (triggered by pip's own request reaching a local server, not by a clock); an unknown
package fails with pip's reason; QGIS's proxy reaches pip."""

from __future__ import annotations

import os
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hiergeo_plugin.core.install import installer
from hiergeo_plugin.core.install.qgis_python import find_qgis_python

ROOT = Path(__file__).resolve().parents[3]
#: Small pure-python packages on this machine's index; the first one that this interpreter does not already have
#: is used, so that the import check can only find it in the target folder.
PINNED_SIX_WHEEL_DIR = "/opt/pypi/files"
SMALL = (("colorama", "0.4.6"), ("zipp", "3.23.0"))  # packages (folders), not single modules


@pytest.fixture(scope="module")
def python() -> str:
    return find_qgis_python().path


@pytest.fixture(scope="module")
def small_package():
    import importlib.util

    for name, version in SMALL:
        if importlib.util.find_spec(name) is None:
            return name, version
    pytest.skip("every small test package is already installed in this interpreter")


# -- the requirements -------------------------------------------------------------------------------------------


def test_the_pinned_list_is_requirements_txt_and_every_marker_is_understood():
    lines = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    normalise = lambda s: re.sub(r"\s+", " ", s.replace("'", '"'))  # noqa: E731
    assert [normalise(x) for x in installer.RUNTIME_REQUIREMENTS] == [normalise(x) for x in lines]
    for minor in range(9, 16):
        chosen = installer.requirements_for((3, minor))
        assert sum(r.startswith("numpy==") for r in chosen) == 1, (minor, chosen)
        assert all(";" not in r for r in chosen)
    assert "numpy==1.26.4" in installer.requirements_for((3, 11))
    assert "numpy==2.2.6" in installer.requirements_for((3, 13))
    assert "numpy==2.4.6" in installer.requirements_for((3, 14))
    with pytest.raises(ValueError, match="platform_system"):
        installer.requirements_for((3, 11), ['pywin32==311; platform_system == "Windows"'])
    # Everything the algorithms import is in the pinned list.
    pinned = {r.split("==")[0].lower().replace("_", "-") for r in installer.RUNTIME_REQUIREMENTS}
    assert {p.lower().replace("_", "-") for _, p in installer.DEPENDENCIES} <= pinned


def test_the_command_installs_into_the_target_with_the_chosen_torch_build(tmp_path):
    target = tmp_path / "QGIS profile" / "hiergeo" / "python3.11"
    cpu = installer.pip_command("/q/python3", target, ["torch==2.14.1"], "cpu", "linux", ["file:///local/simple"])
    assert cpu[:4] == ["/q/python3", "-m", "pip", "install"]
    assert cpu[cpu.index("--target") + 1] == str(target) and "--upgrade" in cpu
    extra = [cpu[i + 1] for i, part in enumerate(cpu) if part == "--extra-index-url"]
    # The user's configured extra indexes survive: the command line replaces pip's configured value.
    assert extra == [installer.TORCH_CPU_INDEX, "file:///local/simple"]
    assert "--index-url" not in cpu and cpu[-1] == "torch==2.14.1"
    assert "--extra-index-url" not in installer.pip_command("py", target, ["torch"], "cuda", "linux")
    assert "--extra-index-url" not in installer.pip_command("py", target, ["torch"], "cpu", "darwin")
    windows_cuda = installer.pip_command("py", target, ["torch"], "cuda", "win32")
    assert installer.TORCH_CUDA_INDEX_WINDOWS in windows_cuda
    with pytest.raises(ValueError):
        installer.pip_command("py", target, ["torch"], "rocm", "linux")
    # One line to paste, quoted for the shell it is pasted into.
    assert f"'{target}'" in installer.command_text(cpu, "linux")
    assert f'"{target}"' in installer.command_text(cpu, "win32")


def test_proxies_reach_the_environment_and_credentials_never_reach_the_log():
    env = installer.pip_environment({"http": "http://proxy:3128", "https": "http://proxy:3128", "no": "localhost"}, {})
    assert env["HTTP_PROXY"] == env["http_proxy"] == "http://proxy:3128"
    assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://proxy:3128"
    assert env["NO_PROXY"] == "localhost" and env["PIP_USER"] == "0"
    line = "Looking in indexes: https://alice:s3cret@mirror.example/simple"
    assert "s3cret" not in installer.redact_line(line) and "mirror.example/simple" in installer.redact_line(line)


def test_private_folder_is_per_python_version_under_the_profile(tmp_path):
    assert installer.private_packages_dir(str(tmp_path), (3, 12, 1)) == tmp_path / "hiergeo" / "python3.12"


def test_private_path_goes_after_the_standard_library_and_before_installed_packages():
    path = ["", "/usr/lib/python311.zip", "/usr/lib/python3.11", "/usr/local/lib/python3.11/dist-packages", "/x"]
    assert installer.add_private_path(path, "/p") == 3 and path[3] == "/p"
    assert installer.add_private_path(path, "/p") == 3 and path.count("/p") == 1
    windows = [r"C:\QGIS\apps\qgis\python", r"C:\QGIS\apps\Python312\Lib", r"C:\QGIS\apps\Python312\Lib\site-packages"]
    assert installer.add_private_path(windows, r"C:\profile\hiergeo\python3.12") == 2
    bare = ["/usr/lib/python3.11"]
    assert installer.add_private_path(bare, "/p") == 1 and bare == ["/usr/lib/python3.11", "/p"]


def test_progress_moves_forward_with_pips_lines():
    meter = installer.PipProgress()
    seen = [meter.update(line) for line in ("Collecting a", "Collecting b", "Downloading b-1.whl (3 kB)")]
    assert 0 < seen[0] < seen[1] == seen[2] < 60
    assert meter.update("Installing collected packages: a, b") == 80
    assert meter.update("Successfully installed a-1 b-1") == 90


# -- pip for real -------------------------------------------------------------------------------------------------


def test_installs_a_small_package_that_a_fresh_interpreter_imports_from_the_target(python, small_package, tmp_path):
    name, version = small_package
    target = tmp_path / "hiergeo" / "python3.x"
    lines = []
    result = installer.install(
        python, target, requirements=[f"{name}=={version}"], modules=[name], variant="cuda", on_line=lines.append
    )
    assert result.ok, (result.message, result.log_tail)
    assert not result.cancelled and result.returncode == 0 and result.missing == ()
    assert lines[0].startswith("$ ") and any(line.startswith("Successfully installed") for line in lines)
    assert result.verify is not None and dict(result.verify.files)[name].startswith(str(target))
    assert dict(result.verify.versions)[name] in (version, "")  # not every package has __version__
    assert any(p.name.startswith(name) for p in target.iterdir())
    # Running it again repairs: a half-deleted package (folder left, __init__.py gone) is reported, then comes back.
    module_file = target / name / "__init__.py"
    module_file.unlink()
    broken = installer.verify_imports(python, target, [name])
    assert not broken.ok and "incomplete install" in dict(broken.missing)[name]
    again = installer.install(python, target, requirements=[f"{name}=={version}"], modules=[name], variant="cuda")
    assert again.ok and module_file.exists(), again.message


def test_the_folders_copy_wins_over_an_installed_one(python, tmp_path):
    """six is installed in this interpreter (dist-packages); the check imports the folder's copy, as the plugin will."""
    import importlib.util

    spec = importlib.util.find_spec("six")
    if spec is None or not os.path.isfile(f"{PINNED_SIX_WHEEL_DIR}/six-1.17.0-py2.py3-none-any.whl"):
        pytest.skip("needs six installed here and six 1.17.0 on this machine's index")
    target = tmp_path / "t"
    result = installer.install(python, target, requirements=["six==1.17.0"], modules=["six"], variant="cuda")
    assert result.ok, (result.message, result.log_tail)
    assert dict(result.verify.files)["six"] == str(target / "six.py") != spec.origin


def test_an_unreachable_torch_index_stops_before_pip_and_the_choice_leaves_it_out(python, tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: connection refused at once
    index = f"http://127.0.0.1:{port}/whl/cpu"
    assert not installer.index_reachable(index, {})
    args = dict(requirements=["colorama==0.4.6"], modules=["colorama"], variant="cpu", torch_index_url=index)
    stopped = installer.install(python, tmp_path / "t", **args)
    assert stopped.outcome is installer.Outcome.TORCH_INDEX_UNREACHABLE and stopped.returncode is None
    lines = []
    result = installer.install(python, tmp_path / "t", allow_default_torch=True, on_line=lines.append, **args)
    assert result.ok and result.torch_from_default_index, (result.message, result.log_tail)
    assert index not in result.command and any("cannot be reached" in line and index in line for line in lines)


def test_an_unknown_package_fails_with_pips_reason_and_the_log_tail(python, tmp_path):
    result = installer.install(
        python, tmp_path / "t", requirements=["hiergeo-no-such-package==0.0.1"], modules=[], variant="cuda"
    )
    assert not result.ok and not result.cancelled and result.returncode not in (0, None)
    assert "hiergeo-no-such-package" in result.message and result.message.startswith("pip failed")
    assert any("No matching distribution" in line for line in result.log_tail)


class _HoldingIndex:
    """An index on 127.0.0.1 that never answers: it sets `asked` when pip's request arrives and holds it."""

    def __init__(self):
        self.asked = threading.Event()
        self.release = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/simple"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conns = []
        while not self.release.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                break
            conns.append(conn)
            conn.recv(4096)
            self.asked.set()
        for conn in conns:
            conn.close()

    def close(self):
        self.release.set()
        self.sock.close()


def test_cancel_kills_pip_while_it_waits_for_the_index(python, tmp_path):
    server = _HoldingIndex()
    cancel = threading.Event()
    server_asked = threading.Thread(target=lambda: server.asked.wait() and cancel.set(), daemon=True)
    server_asked.start()
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=server.url, PIP_DEFAULT_TIMEOUT="600")
    env.pop("PIP_FIND_LINKS", None)
    try:
        result = installer.install(
            python, tmp_path / "t", requirements=["colorama==0.4.6"], modules=[], variant="cuda", cancel=cancel,
            base_env=env,
        )  # fmt: skip
    finally:
        server.close()
    # Without the kill pip would wait 600 s for the answer, past the suite's timeout.
    assert server.asked.is_set() and result.cancelled and not result.ok
    assert result.returncode is not None and result.returncode < 0  # killed by a signal
    assert "Cancelled" in result.message


def test_a_cancel_before_the_start_runs_nothing(tmp_path):
    cancel = threading.Event()
    cancel.set()
    marker = tmp_path / "ran"
    code, cancelled, tail = installer.run_pip([sys.executable, "-c", f"open({str(marker)!r}, 'w')"], cancel=cancel)
    assert cancelled and code is None and not marker.exists()


class _IndexProxy(BaseHTTPRequestHandler):
    """A forward proxy that knows one host, hiergeo-index.invalid, and serves a one-package index for it."""

    wheel: Path
    seen: list

    def do_GET(self):
        type(self).seen.append(self.path)
        if not self.path.startswith("http://hiergeo-index.invalid/"):
            self.send_error(502)
            return
        path = self.path[len("http://hiergeo-index.invalid") :]
        if path.rstrip("/") == "/simple/colorama":
            body = f'<a href="/files/{self.wheel.name}">{self.wheel.name}</a>'.encode()
            kind = "text/html"
        elif path == f"/files/{self.wheel.name}":
            body, kind = self.wheel.read_bytes(), "application/octet-stream"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_qgis_proxy_is_what_pip_uses(python, tmp_path):
    wheels = [p for p in Path("/opt/pypi/files").glob("colorama-0.4.6-*.whl")] if Path("/opt/pypi").is_dir() else []
    if not wheels:
        pytest.skip("this machine's package index (/opt/pypi) has no colorama wheel")
    handler = type("Proxy", (_IndexProxy,), {"wheel": wheels[0], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = f"http://127.0.0.1:{server.server_address[1]}"
    # Only the proxy knows the index's host: the install succeeds only through it.
    env = dict(
        os.environ,
        PIP_CONFIG_FILE=os.devnull,
        PIP_INDEX_URL="http://hiergeo-index.invalid/simple",
        PIP_TRUSTED_HOST="hiergeo-index.invalid",
        PIP_NO_CACHE_DIR="1",
    )
    for name in ("PIP_FIND_LINKS", "NO_PROXY", "no_proxy"):
        env.pop(name, None)
    try:
        result = installer.install(
            python, tmp_path / "t", requirements=["colorama==0.4.6"], modules=["colorama"], variant="cuda",
            proxies={"http": proxy, "https": proxy}, base_env=env,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert result.ok, (result.message, result.log_tail)
    assert any(p.endswith(".whl") for p in handler.seen) and any("/simple/colorama" in p for p in handler.seen)
