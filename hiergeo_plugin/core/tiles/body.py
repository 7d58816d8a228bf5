"""Reading a tile's response body within its bounds: a byte limit on *decoded* bytes, the request's deadline,
and a completeness check against the Content-Length.

Why a module of its own: `resp.content` reads whatever a server sends (a 10 GB Content-Length, an endless chunked
body, a gzip bomb). Here the body is streamed in small chunks and counted after decoding, so compression cannot
multiply past the limit; the deadline (deadline.py) is checked between chunks; and fewer bytes on the wire than
the Content-Length promised is a truncated transfer (TRANSIENT, worth a retry), never "no tile here".
"""

from __future__ import annotations

from typing import Optional

from .deadline import Watch
from .outcome import FetchFailure, TileOutcome

CHUNK = 16 * 1024  # small reads: a deflate stream decodes at most ~1000x a chunk before the limit is checked


def read_body(resp, status: int, max_bytes: int, watch: Watch) -> bytes:
    """The whole body of `resp` (a streamed 200 answer), or FetchFailure.

    Over `max_bytes` (declared or counted) is FATAL; the deadline or a stop ends the read (watch.interrupted); a
    body shorter than its Content-Length is TRANSIENT; an empty body whose framing is complete is a GAP that the
    caller must not remember.
    """
    import requests

    declared = _content_length(resp.headers.get("Content-Length"))
    if declared is not None and declared > max_bytes:
        raise FetchFailure(
            TileOutcome.FATAL, f"response of {declared} bytes is over the {max_bytes}-byte limit", status
        )
    body = bytearray()
    try:
        for chunk in resp.iter_content(CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise FetchFailure(TileOutcome.FATAL, f"response is over the {max_bytes}-byte limit", status)
            late = watch.interrupted()
            if late is not None:
                raise late
    except requests.RequestException as exc:  # resets, truncated chunked bodies, broken gzip
        late = watch.interrupted()
        if late is not None:
            raise late from None
        raise FetchFailure(TileOutcome.TRANSIENT, f"truncated body ({type(exc).__name__})", status) from None
    late = watch.interrupted()
    if late is not None:
        raise late
    received = _raw_bytes_read(resp, len(body))
    if declared is not None and received < declared:
        raise FetchFailure(TileOutcome.TRANSIENT, f"truncated body ({received} of {declared} bytes)", status)
    if not body:
        raise FetchFailure(TileOutcome.GAP, "empty body", status)
    return bytes(body)


def _content_length(value: Optional[str]) -> Optional[int]:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n >= 0 else None


def _raw_bytes_read(resp, decoded: int) -> int:
    """Bytes received on the wire (before gzip decoding), which is what Content-Length counts."""
    try:
        return int(resp.raw.tell())
    except Exception:
        return decoded
