#!/usr/bin/env python3
"""Checks the plugin zip the way the QGIS plugin repository (plugins.qgis.org) checks an upload, before we upload.

Why: an upload that fails the repository's checks is refused or blocked after the fact, and the reason arrives by
mail. The repository's rules are public (github.com/qgis/QGIS-Plugins-Website, read at commit 73c20fa9 of
2026-07-23): `plugins/validator.py` refuses a zip at upload (size, paths, one plugin folder, metadata, LICENSE),
and `plugins/security_scanner.py` then runs bandit and detect-secrets on the unpacked zip. Either tool's check
fails on any finding of a rule the site enables, both checks are "critical", and one failed critical check
blocks the version. The uploader may skip rules marked skippable (XML-RPC uploads skip all of them); mandatory
ones can only be fixed. This script applies all enabled rules, as the web form does when nothing is skipped,
and labels each finding mandatory or skippable.

The scans run as the site runs them (same tools, versions pinned in requirements-dev.txt like the site's
`~=1.9`/`~=1.5`; same arguments, enabled tests and plugins; no severity or confidence threshold). What the site
does that this script cannot, it says instead of pretending: the site fetches the metadata's homepage, tracker
and repository (HEAD, 10 s) and this script only does so with `--online`; the site's flake8 check is
informational and not run here. Stricter than the site on purpose: more than one top folder, a missing icon and
an empty required metadata value fail here (the site only warns or ignores them).

Placeholders in the metadata's links and email (reserved names such as `.invalid`, `example.org`) are not a
failure of the zip, but the plugin cannot be published with them: they are listed, and `--publish` makes them
a failure.

Usage: check_zip.py [ZIP] [--publish] [--online]. Without ZIP, `scripts/make_zip.sh` builds the zip first.
Exit status: 0 clean, 1 findings, 2 the check itself could not run (a tool missing, no zip).
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]

# -
MAX_BYTES = 25_000_000  # PLUGIN_MAX_UPLOAD_SIZE: 25 MB, decimal
REQUIRED_METADATA = (
    "name",
    "description",
    "version",
    "qgisMinimumVersion",
    "author",
    "email",
    "about",
    "tracker",
    "repository",
)
FORBIDDEN_URLS = {"tracker": "http://bugs", "repository": "http://repo", "homepage": "http://homepage"}
FORBIDDEN_DIRS = ("__MACOSX", ".git", "__pycache__")
SUSPICIOUS_SUFFIXES = (".exe", ".dll", ".so", ".dylib", ".bat", ".sh", ".ps1", ".cmd")  # FILE_SUSPICIOUS
SCANNER_CONFIG_FILES = (".bandit", ".secrets.baseline", ".flake8")  # change what the scans report: none shipped
# bandit tests the site enables. Mandatory: cannot be skipped by the uploader; skippable: the uploader may skip
# them (and XML-RPC uploads do); either kind blocks the version when it is not skipped. Off: B109 B404 B410 B411.
BANDIT_MANDATORY = (
    "B102 B103 B105 B106 B107 B111 B201 B202 B301 B302 B304 B305 B306 B307 B312 B321 B323 B401 B402 B412 B413 "
    "B501 B502 B503 B505 B506 B507 B601 B602 B604 B605 B609 B610 B611 B612 B613 B615 B701"
).split()
BANDIT_SKIPPABLE = (
    "B101 B104 B108 B110 B112 B113 B303 B308 B310 B311 B313 B314 B315 B316 B317 B318 B319 B320 B324 B403 B405 "
    "B406 B407 B408 B409 B504 B508 B509 B603 B606 B607 B608 B614 B702 B703 B704"
).split()
# detect-secrets plugins: the site passes --disable-plugin for the ones it does not enable.
SECRETS_DISABLED = ("IPPublicDetector",)
SECRETS_SKIPPABLE = ("Base64HighEntropyString", "HexHighEntropyString", "KeywordDetector")

# Names that cannot belong to anyone (RFC 2606 / 6761): placeholders until the project has real ones.
PLACEHOLDER_HOST = re.compile(r"(^|\.)(invalid|example|test|localhost|example\.(com|org|net))$", re.IGNORECASE)


@dataclass
class Finding:
    check: str  # "zip", "metadata", "files", "bandit", "secrets", "publish"
    where: str
    what: str
    rule: str = ""
    kind: str = "error"  # error | mandatory | skippable | placeholder | note

    def line(self) -> str:
        rule = f" {self.rule}" if self.rule else ""
        kind = f" [{self.kind}]" if self.kind in ("mandatory", "skippable") else ""
        return f"  {self.check}{rule}{kind} {self.where}: {self.what}"


class CheckError(Exception):
    """The check could not run (exit 2), as opposed to findings (exit 1)."""


# -
def check_zip_rules(path: Path) -> List[Finding]:
    out: List[Finding] = []
    size = path.stat().st_size
    if size > MAX_BYTES:
        out.append(Finding("zip", path.name, f"{size:,} bytes, over the repository's {MAX_BYTES:,}"))
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        return out + [Finding("zip", path.name, f"cannot be opened as a zip ({exc})")]
    with zf:
        names = zf.namelist()
        for name in names:
            if ".." in name or name.startswith(os.sep) or name.startswith("/"):
                out.append(Finding("zip", name, "path information ('..' or a leading slash) is refused"))
            if ".pyc" in name:  # the site refuses any name containing ".pyc"
                out.append(Finding("zip", name, "compiled Python (.pyc) is refused"))
            parts = name.split("/")
            for forbidden in FORBIDDEN_DIRS:
                if forbidden in parts:
                    out.append(Finding("zip", name, f"a '{forbidden}' folder is refused"))
            if "\\" in name:
                out.append(Finding("zip", name, "backslash in a name (not a valid zip name) is refused"))
            if re.match(r"^[A-Za-z]:", name):
                out.append(Finding("zip", name, "drive letter in a name is refused"))
        bad = zf.testzip()
        if bad:
            out.append(Finding("zip", bad, "bad zip member (CRC error)"))
        tops = sorted({n.split("/")[0] for n in names})
        if len(tops) != 1:
            out.append(Finding("zip", path.name, f"one top folder expected, found {len(tops)}: {', '.join(tops)}"))
        if not names or "/" not in names[0]:
            return out + [Finding("zip", path.name, "no plugin folder inside (the first entry is not in a folder)")]
        top = names[0].split("/")[0]
        if not re.match(r"^[A-Za-z][A-Za-z0-9-_]+$", top) or not top.isidentifier():
            out.append(Finding("zip", top, "the plugin folder's name must be a Python identifier (new plugins)"))
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{top}/{required}" not in names:
                out.append(Finding("zip", f"{top}/{required}", "missing (required by the repository)"))
        if f"{top}/metadata.txt" in names:
            out += check_metadata(zf.read(f"{top}/metadata.txt"), top, names)
        out += check_files(zf)
    return out


def read_metadata(raw: bytes) -> dict:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive, as on the site
    parser.read_string(raw.decode("utf-8"))
    if not parser.has_section("general"):
        raise ValueError("no [general] section")
    return dict(parser.items("general"))


def check_metadata(raw: bytes, top: str, names: List[str]) -> List[Finding]:
    where = f"{top}/metadata.txt"
    try:
        meta = read_metadata(raw)
    except (ValueError, UnicodeDecodeError, configparser.Error) as exc:
        return [Finding("metadata", where, f"cannot be parsed: {exc}")]
    out: List[Finding] = []
    for key in REQUIRED_METADATA:
        if key not in meta:
            out.append(Finding("metadata", where, f"required key '{key}' is missing"))
        elif not meta[key].strip():
            out.append(Finding("metadata", where, f"required key '{key}' is empty"))
    for key, forbidden in FORBIDDEN_URLS.items():
        url = meta.get(key, "").strip()
        if not url:
            continue  # homepage is optional; tracker and repository are reported above
        parsed = urlparse(url)
        if url == forbidden or not (parsed.scheme and parsed.netloc):
            out.append(Finding("metadata", where, f"{key}={url!r} is not a valid link"))
    if "/" in meta.get("author", ""):
        out.append(Finding("metadata", where, "author cannot contain slashes"))
    if "supportsQt6" in meta:
        out.append(
            Finding("metadata", where, "supportsQt6 is deprecated (the site warns); qgisMaximumVersion=4.99 says it")
        )
    icon = meta.get("icon", "").strip()
    if icon.startswith("./"):
        icon = icon[2:]
    if not icon or f"{top}/{icon}" not in names:
        out.append(Finding("metadata", where, f"icon={icon!r} is not in the zip"))
    return out


def placeholders(raw: bytes) -> List[Finding]:
    """Links and the email that cannot be anyone's yet: the plugin is not publishable with them."""
    try:
        meta = read_metadata(raw)
    except (ValueError, UnicodeDecodeError, configparser.Error):
        return []
    out: List[Finding] = []
    for key in ("homepage", "tracker", "repository", "email"):
        value = meta.get(key, "").strip()
        host = value.rpartition("@")[2] if key == "email" else (urlparse(value).hostname or "")
        if value and PLACEHOLDER_HOST.search(host):
            out.append(Finding("publish", "metadata.txt", f"{key}={value} is a placeholder", kind="placeholder"))
    return out


def check_links_online(raw: bytes) -> List[Finding]:
    """What the site does at upload: a HEAD request per link (10 s, redirects followed), status < 400."""
    import urllib.request

    out: List[Finding] = []
    meta = read_metadata(raw)
    for key in ("tracker", "repository", "homepage"):
        url = meta.get(key, "").strip()
        if not url.startswith(("http://", "https://")):
            continue  # reported as not a valid link already
        try:
            req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "Mozilla/5.0"})
            with urllib.request.urlopen(req, timeout=10) as resp:
                status = resp.status
        except Exception as exc:  # any failure is what the site reports: "cannot be reached"
            out.append(Finding("metadata", "metadata.txt", f"{key}={url} cannot be reached ({exc})"))
            continue
        if status >= 400:
            out.append(Finding("metadata", "metadata.txt", f"{key}={url} answers {status}"))
    return out


# -
def check_files(zf: zipfile.ZipFile) -> List[Finding]:
    out: List[Finding] = []
    for info in zf.infolist():
        base = info.filename.rsplit("/", 1)[-1]
        mode = info.external_attr >> 16
        if info.filename.endswith(".py") and mode & 0o111:
            out.append(Finding("files", info.filename, "Python file with the executable bit", "FILE_EXECUTABLE"))
        if info.filename.lower().endswith(SUSPICIOUS_SUFFIXES):
            out.append(Finding("files", info.filename, "executable or binary file type", "FILE_SUSPICIOUS"))
        if base in SCANNER_CONFIG_FILES:
            out.append(Finding("files", info.filename, "scanner config file: the scans would not be the site's"))
    return out


# -
def _tool(module: str) -> List[str]:
    try:
        __import__(module)
    except ImportError:
        raise CheckError(
            f"{module} is not installed in {sys.executable}: `make setup-dev` (requirements-dev.txt)"
        ) from None
    return [sys.executable, "-m", module]


def run_bandit(tree: Path) -> List[Finding]:
    """`bandit -r DIR -f json --quiet -t <enabled tests>`: the site's command when it has rules configured."""
    tests = ",".join(sorted(BANDIT_MANDATORY + BANDIT_SKIPPABLE))
    cmd = _tool("bandit") + ["-r", str(tree), "-f", "json", "--quiet", "-t", tests]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise CheckError(f"bandit gave no report (exit {proc.returncode}): {proc.stderr.strip()[-800:]}") from None
    out = []
    for issue in report.get("results", []):
        rel = Path(issue["filename"]).relative_to(tree).as_posix()
        test = issue.get("test_id", "")
        out.append(
            Finding(
                "bandit",
                f"{rel}:{issue.get('line_number', 0)}",
                f"{issue.get('issue_text', '').strip()} (severity {issue.get('issue_severity', '?').lower()})",
                test,
                "mandatory" if test in BANDIT_MANDATORY else "skippable",
            )
        )
    for err in report.get("errors", []):  # a file bandit cannot parse is not scanned: say so
        rel = Path(err.get("filename", str(tree))).relative_to(tree).as_posix()
        out.append(Finding("bandit", rel, f"not scanned: {err.get('reason', '?')}"))
    return out


def run_detect_secrets(tree: Path) -> List[Finding]:
    """`detect-secrets scan --all-files ... .` in the unpacked zip, with the site's exclusions and plugins."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    cmd = _tool("detect_secrets") + ["scan", "--all-files"]
    cmd += ["--exclude-files", r"metadata\.txt", "--exclude-files", r"\.secrets\.baseline"]
    for plugin in SECRETS_DISABLED:
        cmd += ["--disable-plugin", plugin]
    cmd.append(".")
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise CheckError(f"detect-secrets gave no report (exit {proc.returncode}): {proc.stderr[-800:]}") from None
    by_type = {t: cls.__name__ for t, cls in get_mapping_from_secret_type_to_class().items()}
    out = []
    for file, secrets in report.get("results", {}).items():
        for secret in secrets:
            plugin = by_type.get(secret.get("type", ""), secret.get("type", "?"))
            out.append(
                Finding(
                    "secrets",
                    f"{file}:{secret.get('line_number', 0)}",
                    f"potential {secret.get('type', 'secret')}",
                    plugin,
                    "skippable" if plugin in SECRETS_SKIPPABLE else "mandatory",
                )
            )
    return out


# -
def build_zip(dist: Path) -> Path:
    env = dict(os.environ, DIST_DIR=str(dist))
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "make_zip.sh")], capture_output=True, text=True, env=env, timeout=300
    )
    if proc.returncode != 0:
        raise CheckError(f"make_zip.sh failed: {proc.stderr.strip()}")
    zips = sorted(dist.glob("hiergeo-*.zip"), key=lambda p: p.stat().st_mtime)
    if not zips:
        raise CheckError(f"make_zip.sh made no zip in {dist}")
    return zips[-1]


def check(path: Path, publish: bool = False, online: bool = False) -> List[Finding]:
    """All findings for the zip at `path`; placeholders count as findings only with `publish`."""
    findings = check_zip_rules(path)
    with zipfile.ZipFile(path) as zf:
        top = zf.namelist()[0].split("/")[0] if zf.namelist() else ""
        raw = zf.read(f"{top}/metadata.txt") if f"{top}/metadata.txt" in zf.namelist() else b""
        tree = Path(tempfile.mkdtemp(prefix="hiergeo-check-zip-"))
        try:
            zf.extractall(tree)
            findings += run_bandit(tree)
            findings += run_detect_secrets(tree)
        finally:
            shutil.rmtree(tree, ignore_errors=True)
    if raw and online:
        findings += check_links_online(raw)
    if raw:
        marks = placeholders(raw)
        findings += marks if publish else [Finding(f.check, f.where, f.what, kind="note") for f in marks]
    return findings


def report(path: Path, findings: List[Finding], online: bool) -> int:
    failures = [f for f in findings if f.kind != "note"]
    notes = [f for f in findings if f.kind == "note"]
    print(f"check-zip: {path} ({path.stat().st_size / 1024:.0f} KiB)")
    for name, label in (
        ("zip", "zip rules (validator.py)"),
        ("metadata", "metadata.txt"),
        ("files", "file analysis"),
        ("bandit", f"bandit, {len(BANDIT_MANDATORY) + len(BANDIT_SKIPPABLE)} tests as the site enables them"),
        ("secrets", "detect-secrets, all plugins but " + ", ".join(SECRETS_DISABLED)),
    ):
        n = sum(1 for f in failures if f.check == name)
        print(f"  {label:<60} {'ok' if n == 0 else f'{n} finding(s)'}")
    print(f"  {'metadata links reachable':<60} {'checked' if online else 'not checked (offline; --online)'}")
    if failures:
        print("FINDINGS (the repository would refuse the upload, block the version or warn):")
        for f in failures:
            print(f.line())
    if notes:
        print("NOT PUBLISHABLE YET (not a failure of the zip; --publish makes it one):")
        for f in notes:
            print(f.line())
    print(f"check-zip: {'FAILED, ' + str(len(failures)) + ' finding(s)' if failures else 'passed'}")
    return 1 if failures else 0


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("zip", nargs="?", type=Path, help="the zip to check (default: build it with make_zip.sh)")
    ap.add_argument("--publish", action="store_true", help="placeholder links or email are a failure")
    ap.add_argument("--online", action="store_true", help="fetch the metadata's links as the site does")
    args = ap.parse_args(argv)
    try:
        path = args.zip or build_zip(Path(os.environ.get("DIST_DIR", ROOT / "dist")))
        if not path.is_file():
            raise CheckError(f"no such zip: {path}")
        findings = check(path, publish=args.publish, online=args.online)
    except (CheckError, subprocess.TimeoutExpired) as exc:
        print(f"check-zip: could not check: {exc}", file=sys.stderr)
        return 2
    return report(path, findings, args.online)


if __name__ == "__main__":
    sys.exit(main())
