"""The installer against a package index of its own: a PEP 503 "simple" index served on 127.0.0.1 by the test, with
small wheels built here (a fake `torch` that requires a fake `triton`, as PyPI's Linux torch does), so that what pip
asks for and what lands in the folder can be counted. PyTorch's CPU index is a closed port on 127.0.0.1: the
CPU-only choice must then stop and say so, and only the explicit choice installs the default index's torch."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

from hiergeo_plugin.core.install import installer
from hiergeo_plugin.core.install.installer import Outcome
from hiergeo_plugin.core.install.qgis_python import find_qgis_python


def build_wheel(folder: Path, name: str, version: str, requires: Sequence[str] = ()) -> Path:
    """A pure-python wheel of one package `name` whose __init__ says it is a test's (RECORD with real hashes)."""
    dist = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    files = {
        f"{name}/__init__.py": f"__version__ = {version!r}\nHIERGEO_TEST_WHEEL = True\n",
        f"{dist}/METADATA": metadata + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: hiergeo-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


class LocalIndex:
    """A PEP 503 index on 127.0.0.1 for the given wheels, under any prefix (`<anything>/simple/<project>/`), so one
    server can stand for several index URLs. `requests` lists every path asked for, `authorizations` the
    Authorization headers received (pip sends a URL's user:password as Basic auth)."""

    def __init__(self, wheels: Sequence[Path]):
        self.wheels = {w.name: w for w in wheels}
        self.requests: List[str] = []
        self.authorizations: List[str] = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                index.requests.append(self.path)
                index.authorizations.append(self.headers.get("Authorization", ""))
                status, kind, body = index.answer(self.path.split("?")[0])
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.root + "/simple/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def answer(self, path: str):
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[-2] == "files" and parts[-1] in self.wheels:
            return 200, "application/octet-stream", self.wheels[parts[-1]].read_bytes()
        if len(parts) >= 2 and parts[-2] == "simple":
            project = _normalise(parts[-1])
            links = [
                f'<a href="../../files/{name}">{name}</a>'
                for name in self.wheels
                if _normalise(name.split("-")[0]) == project
            ]
            if links:
                return 200, "text/html", ("<html><body>" + "".join(links) + "</body></html>").encode()
        return 404, "text/plain", b"not here"

    def __enter__(self) -> LocalIndex:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closed_url(path: str = "/whl/cpu") -> str:
    """A URL on 127.0.0.1 where nothing listens: connection refused at once, as an unreachable index."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}{path}"


def isolated_env(index_url: str, **extra: str) -> Dict[str, str]:
    """pip with this index only: no pip configuration, no find-links, no cache (the wheels are fakes)."""
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=index_url, PIP_NO_CACHE_DIR="1", **extra)
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def python() -> str:
    return find_qgis_python().path


@pytest.fixture(scope="module")
def torch_wheels(tmp_path_factory) -> List[Path]:
    """A fake torch that brings a fake triton, as PyPI's Linux torch brings the real one."""
    folder = tmp_path_factory.mktemp("wheels")
    return [
        build_wheel(folder, "torch", "2.14.1", requires=["triton==3.9.0"]),
        build_wheel(folder, "triton", "3.9.0"),
    ]


def test_cpu_only_stops_when_its_index_is_unreachable_and_installs_pypis_torch_only_when_chosen(
    python, torch_wheels, tmp_path
):
    unreachable = closed_url()
    target = tmp_path / "hiergeo" / "python3.x"
    lines: List[str] = []
    with LocalIndex(torch_wheels) as pypi:
        env = isolated_env(pypi.url)
        common = dict(
            requirements=["torch==2.14.1"], modules=["torch", "triton"], variant="cpu", platform="linux",
            torch_index_url=unreachable, base_env=env,
        )  # fmt: skip
        stopped = installer.install(python, target, on_line=lines.append, **common)
        asked_before_choice, left_before_choice = list(pypi.requests), list(target.iterdir())
        chosen = installer.install(python, target, allow_default_torch=True, **common)
    # Without the choice: pip never ran, nothing was fetched or installed, and the result says why (typed).
    assert stopped.outcome is Outcome.TORCH_INDEX_UNREACHABLE and not stopped.ok and not stopped.cancelled
    assert stopped.unreachable_index == unreachable and stopped.returncode is None and stopped.command == ()
    assert not stopped.torch_from_default_index
    assert asked_before_choice == [] and left_before_choice == []
    assert "5.7 GB" in stopped.message and "triton" in stopped.message and unreachable in stopped.message
    assert lines == [stopped.message]
    # With the explicit choice: the default index's torch, with the triton it brings.
    assert chosen.ok and chosen.outcome is Outcome.INSTALLED and chosen.torch_from_default_index, chosen.message
    assert any("/simple/torch/" in p for p in pypi.requests) and any("/simple/triton/" in p for p in pypi.requests)
    files = dict(chosen.verify.files)
    assert files["torch"].startswith(str(target)) and files["triton"].startswith(str(target))
    assert unreachable not in chosen.command


def test_a_reachable_cpu_index_is_used_without_asking(python, torch_wheels, tmp_path):
    """The usual case is untouched: the CPU index answers, torch comes from it, no question is asked."""
    folder = tmp_path / "cpu"
    folder.mkdir()
    cpu_only = build_wheel(folder, "torch", "2.14.1")  # PyTorch's CPU build needs no triton
    with LocalIndex([cpu_only]) as cpu_index, LocalIndex(torch_wheels[1:]) as pypi:
        result = installer.install(
            python, tmp_path / "t", requirements=["torch==2.14.1"], modules=["torch"], variant="cpu",
            platform="linux", torch_index_url=cpu_index.url, base_env=isolated_env(pypi.url),
        )  # fmt: skip
    assert result.ok and result.outcome is Outcome.INSTALLED and not result.torch_from_default_index, result.message
    assert any("/simple/torch/" in p for p in cpu_index.requests)
    assert not (tmp_path / "t" / "triton").exists()


def test_the_default_build_is_described_per_platform():
    assert "5.7 GB" in installer.default_torch_build("linux") and "triton" in installer.default_torch_build("linux")
    assert "CPU only" in installer.default_torch_build("win32")


# -- credentials in pip's configuration -----------------------------------------------------------------------------

PASSWORD = "pw-Secret-9f8e7d"  # in PIP_INDEX_URL (user:password)
PATH_TOKEN = "tok3nAbCdEf123456"  # a path segment of an extra index in pip.conf
QUERY_TOKEN = "qT0kenZyX987"  # a query value of another extra index in pip.conf


def token_setup(tmp_path: Path, pypi: LocalIndex) -> Dict[str, str]:
    """pip's environment with a token in PIP_INDEX_URL and two in a pip.conf (as a path segment, as ?token=)."""
    conf = tmp_path / "pip.conf"
    conf.write_text(
        f"[global]\nextra-index-url = {pypi.root}/{PATH_TOKEN}/simple/ {pypi.root}/q/simple/?token={QUERY_TOKEN}\n",
        encoding="utf-8",
    )
    env = isolated_env(f"http://__token__:{PASSWORD}@127.0.0.1:{pypi.server.server_address[1]}/simple/")
    env["PIP_CONFIG_FILE"] = str(conf)
    return env


def test_pips_configured_urls_are_what_the_masker_is_told(python, tmp_path):
    with LocalIndex([]) as pypi:
        env = token_setup(tmp_path, pypi)
        settings = installer.configured_pip_settings(python, env)
    urls = installer.pip_secret_urls(settings, env)
    assert (
        any(PASSWORD in u for u in urls) and any(PATH_TOKEN in u for u in urls) and any(QUERY_TOKEN in u for u in urls)
    )
    mask = installer.pip_masker(settings, env)
    line = f"Looking in indexes: {' '.join(urls)}; a message quoting {PATH_TOKEN} alone"
    assert not any(secret in mask(line) for secret in (PASSWORD, PATH_TOKEN, QUERY_TOKEN)), mask(line)
    public = installer.pip_command("py", tmp_path, ["torch"], "cuda", "win32")
    assert installer.shown_command(public, mask) == tuple(public)  # PyTorch's cu128 index is shown as it is
