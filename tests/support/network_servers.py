"""Real servers on 127.0.0.1 for the QGIS-networking tests: a tile server that demands credentials or headers
(over HTTP or HTTPS), a forward proxy that counts what passes through it, and a private CA to sign HTTPS with.

Not mocks: real sockets, and the client under test is HierGeo's own TileSource (requests + urllib3). They record
what they saw (request headers, counts), so the tests assert with counters, not clocks.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import select
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Dict, List, Optional
from urllib.parse import urlsplit

from helpers import hashed_tile_png


class _Server:
    def __init__(self, handler, ssl_context: Optional[ssl.SSLContext] = None):
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.scheme = "http"
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._httpd.shutdown()
        self._httpd.server_close()


class GuardedTileServer(_Server):
    """Serves /{z}/{x}/{y}.png only to requests carrying every `required` header with its exact value (401
    otherwise); `redirect_to` (a base URL) answers every request with a 302 there instead. Keeps the headers of
    every request it saw."""

    def __init__(
        self,
        required: Optional[Dict[str, str]] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
        redirect_to: Optional[str] = None,
    ):
        self.required = dict(required or {})
        self.redirect_to = redirect_to
        self.seen: List[Dict[str, str]] = []
        self.served = 0
        self.refused = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                headers = {k: v for k, v in self.headers.items()}
                with server.lock:
                    server.seen.append(headers)
                if server.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", server.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                ok = all(self.headers.get(k) == v for k, v in server.required.items())
                parts = urlsplit(self.path).path.strip("/").split("/")
                body = b"no"
                status = 401
                if ok and len(parts) == 3:
                    z, x, y = int(parts[0]), int(parts[1]), int(parts[2].split(".")[0])
                    body, status = hashed_tile_png(z, x, y), 200
                with server.lock:
                    if status == 200:
                        server.served += 1
                    else:
                        server.refused += 1
                self.send_response(status)
                self.send_header("Content-Type", "image/png" if status == 200 else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler, ssl_context)

    @property
    def template(self) -> str:
        return self.url + "/{z}/{x}/{y}.png"

    def headers_seen(self, name: str) -> List[Optional[str]]:
        with self.lock:
            return [h.get(name) for h in self.seen]


class ForwardProxy(_Server):
    """A plain HTTP forward proxy: absolute-URI GETs are fetched from their server and passed back. Counts the
    requests it forwarded; with `proxy_authorization`, demands it (407 otherwise); with `hold`, it hangs on every
    request until `hold` is set."""

    def __init__(self, proxy_authorization: Optional[str] = None, hold: Optional[threading.Event] = None):
        self.forwarded: List[str] = []
        self.arrived = threading.Event()
        self.client_hung_up = threading.Event()
        self.refused = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy.arrived.set()
                if hold is not None:  # a proxy that hangs: answers nothing until released or the client hangs up
                    deadline = time.monotonic() + 20
                    while not hold.is_set() and time.monotonic() < deadline:
                        readable, _, _ = select.select([self.connection], [], [], 0.05)
                        if readable and not self.connection.recv(1, socket.MSG_PEEK):
                            proxy.client_hung_up.set()
                            break
                    self.close_connection = True
                    return
                if proxy_authorization and self.headers.get("Proxy-Authorization") != proxy_authorization:
                    with proxy.lock:
                        proxy.refused += 1
                    self.send_response(407)
                    self.send_header("Proxy-Authenticate", 'Basic realm="test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                target = urlsplit(self.path)
                if not target.scheme:  # not a proxy request
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with proxy.lock:
                    proxy.forwarded.append(self.path)
                headers = {k: v for k, v in self.headers.items() if not k.lower().startswith("proxy-")}
                conn = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=10)
                try:
                    path = target.path + (f"?{target.query}" if target.query else "")
                    conn.request("GET", path, headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    self.send_response(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("connection", "transfer-encoding", "content-length", "keep-alive"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    conn.close()

        super().__init__(Handler)


class PrivateCA:
    """A self-signed CA and a server certificate for 127.0.0.1 signed by it, written to `folder` (with the
    cryptography package, else with the openssl command)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.cert_file = folder / "server.pem"
        self.key_file = folder / "server.key"
        try:
            import cryptography  # noqa: F401
        except ImportError:  # a venv without it (the test matrix): the openssl command does the same
            self._with_openssl(folder)
        else:
            self._with_cryptography(folder)

    def _with_openssl(self, folder: Path) -> None:
        import shutil
        import subprocess

        if shutil.which("openssl") is None:
            import pytest

            pytest.skip("neither the cryptography package nor the openssl command is available to make a CA")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        ca_key, ca_pem, csr = folder / "ca.key", folder / "ca.pem", folder / "server.csr"
        (folder / "ext.cnf").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
            "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        for args in (
            [
                "req",
                "-x509",
                *ec,
                "-keyout",
                ca_key,
                "-out",
                ca_pem,
                "-days",
                "30",
                "-subj",
                "/CN=HierGeo test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE,pathlen:0",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            ["req", *ec, "-keyout", self.key_file, "-out", csr, "-subj", "/CN=127.0.0.1"],
            [
                "x509",
                "-req",
                "-in",
                csr,
                "-CA",
                ca_pem,
                "-CAkey",
                ca_key,
                "-CAcreateserial",
                "-out",
                self.cert_file,
                "-days",
                "30",
                "-extfile",
                folder / "ext.cnf",
            ],
        ):
            subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
        self.ca_pem = ca_pem.read_bytes()

    def _with_cryptography(self, folder: Path) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HierGeo test CA")])
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(ca_ski, critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context
