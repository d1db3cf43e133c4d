"""Which page of a project answers a request: PEP 691 content negotiation, as a rule.

This is the specification the mirrors' nginx implements and the monitor probes
with: one pure function, tested against PEP 691's own examples and the Accept
headers pip and uv really send. Issue 16 was nginx mapping any JSON-capable Accept
to `index.v1_json` whether or not that file existed, so pip got 403 on every
HTML-only project; here the answer is always a page that exists.

The rules, PEP 691's where it has them and RFC 9110's (section 12.5.1) below that:

1. A missing or empty Accept header counts as `*/*` (PEP 691).
2. Each representation takes the q-value of the most specific range that matches
   it (`type/subtype` over `type/*` over `*/*`); q=0 means "not this". Ranges with a
   malformed q-value are ignored, as are entries past MAX_ENTRIES.
3. JSON is only sent to a client that named it (`application/vnd.pypi.simple.v1+json`
   or the `latest` alias). A wildcard never selects it: `*/*` is what browsers,
   curl and pre-691 tools send, and they expect HTML (PEP 691: `text/html` is the
   legacy alias every old client understands).
4. The highest q wins. On a tie, a type the client named beats one only a wildcard
   matched, then the server's preference decides: JSON (PEP 691 recommends the
   most expressive format), then `application/vnd.pypi.simple.v1+html`, then
   `text/html`; between wildcard-only matches `text/html` comes first.
5. Nothing acceptable that exists: None (the server answers 406, as PEP 691
   recommends over 300).

The answer's Content-Type is the actual version's, never `latest` (PEP 691 MUST).

Standard library only: this also runs on hosts that have only Debian's python3.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

__all__ = [
    "HTML_PAGES",
    "JSON_PAGE",
    "MAX_ENTRIES",
    "PIP_ACCEPT",
    "TEXT_HTML",
    "UV_ACCEPT",
    "V1_HTML",
    "V1_JSON",
    "choose_page",
]

V1_JSON = "application/vnd.pypi.simple.v1+json"
V1_HTML = "application/vnd.pypi.simple.v1+html"
TEXT_HTML = "text/html"
_LATEST_JSON = "application/vnd.pypi.simple.latest+json"
_LATEST_HTML = "application/vnd.pypi.simple.latest+html"

# What the clients send (pip: src/pip/_internal/index/collector.py; uv: its registry
# client), so the monitor can ask as they do.
PIP_ACCEPT = f"{V1_JSON}, {V1_HTML}; q=0.1, {TEXT_HTML}; q=0.01"
UV_ACCEPT = f"{V1_JSON}, {V1_HTML};q=0.2, {TEXT_HTML};q=0.01"

JSON_PAGE = "index.v1_json"
# HTML page files, the first that exists is served: ours and bandersnatch's name it
# index.html; bandersnatch also writes the same bytes as index.v1_html.
HTML_PAGES = ("index.html", "index.v1_html")
MAX_ENTRIES = 64  # pip sends 3, browsers about 6; more is not a client we need to please
MAX_HEADER = 8192  # nginx's default large_client_header_buffers line

_Q_RE = re.compile(r"^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$")


@dataclass(frozen=True)
class _Range:
    type: str
    subtype: str
    q: float


def _parse(accept: str | None) -> list[_Range]:
    if accept is None or not accept.strip():
        return [_Range("*", "*", 1.0)]
    ranges = []
    for item in accept[:MAX_HEADER].split(",")[:MAX_ENTRIES]:
        media, *params = (part.strip() for part in item.split(";"))
        kind, sep, sub = media.lower().partition("/")
        if not sep or not kind or not sub or (kind == "*" and sub != "*"):
            continue  # not a media range
        q = _weight(params)
        if q is not None:
            ranges.append(_Range(kind, sub, q))
    return ranges


def _weight(params: list[str]) -> float | None:
    """The range's q (1 without one); None for a malformed one, which voids the range.
    RFC 9110: parameters after the weight are accept-ext, and ignored."""
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            value = value.strip()
            return float(value) if _Q_RE.match(value) else None
    return 1.0


def _quality(ranges: list[_Range], media: str, aliases: tuple[str, ...] = ()) -> tuple[float, bool]:
    """(q, named): the q-value of the most specific range matching `media` (or one of
    its aliases, which count as naming it), and whether that range named it."""
    kind = media.partition("/")[0]
    best: tuple[int, float] | None = None
    for r in ranges:
        full = f"{r.type}/{r.subtype}"
        if full == media or full in aliases:
            rank = 3
        elif r.type == kind and r.subtype == "*":
            rank = 2
        elif r.type == "*":
            rank = 1
        else:
            continue
        if best is None or rank > best[0] or (rank == best[0] and r.q > best[1]):
            best = (rank, r.q)
    if best is None:
        return 0.0, False
    return best[1], best[0] == 3


def choose_page(accept: str | None, available: Collection[str]) -> tuple[str, str] | None:
    """(file name, Content-Type) of the page that answers `accept`, from the page files
    in `available` (the names in `simple/<project>/`); None when nothing acceptable
    exists (406)."""
    ranges = _parse(accept)
    html_file = next((name for name in HTML_PAGES if name in available), None)
    candidates: list[tuple[float, bool, int, str, str]] = []
    if JSON_PAGE in available:
        q, named = _quality(ranges, V1_JSON, (_LATEST_JSON,))
        if named and q > 0:
            candidates.append((q, True, 3, JSON_PAGE, V1_JSON))
    if html_file is not None:
        q, named = _quality(ranges, V1_HTML, (_LATEST_HTML,))
        if q > 0:
            candidates.append((q, named, 2 if named else 0, html_file, V1_HTML))
        q, named = _quality(ranges, TEXT_HTML)
        if q > 0:
            candidates.append((q, named, 1, html_file, TEXT_HTML))
    if not candidates:
        return None
    best = max(candidates, key=lambda c: (c[0], c[1], c[2]))
    return best[3], best[4]
