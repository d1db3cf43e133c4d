"""PEP 503 HTML and PEP 691 JSON project pages: read, check, and make one from the other.

Every project a mirror serves must answer in both forms (issue 16): current pip and
uv ask for JSON first and take HTML only as a fallback, older clients only know
HTML. An upstream tree often has just one form, so the other is made here.

The JSON form is the model. An HTML page is read into the dict a JSON page would
hold, HTML is rendered from such a dict, and keys this module does not know are
carried through untouched (PEP 740 `provenance`, PEP 792 `project-status`, private
`_` keys): a mirror must not drop what upstream said. Three things the HTML cannot
say are filled in from the files themselves (`to_json_page`): PEP 700's `size`,
`upload-time` and `versions`.

HTML is read with html.parser, not regular expressions: attribute values hold
escaped text (`data-requires-python="&gt;=3.8"`), quotes of either kind or none,
and anchors may span lines; a tokenizer gets all of that right, a regex gets some.
What the page says is then checked strictly (a hash fragment, an anchor whose text
is not its file name, a major API version we do not know, a `<base>` that moves
every link): a page we cannot understand is refused with a PageError naming it,
never half-converted.

Standard library only: this also runs on hosts that have only Debian's python3.
"""

from __future__ import annotations

import copy
import html
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urlsplit

from mirrorfleet.content.dists import file_version, normalize, version_key
from mirrorfleet.errors import MirrorfleetError

__all__ = [
    "API_VERSION",
    "MAX_FILES",
    "MAX_PAGE_BYTES",
    "FileFacts",
    "PageError",
    "anchor_hrefs",
    "html_to_json",
    "json_to_html",
    "metadata_advertised",
    "parse_html",
    "parse_json",
    "render_html",
    "render_json",
    "to_iso",
    "to_json_page",
]

# The version of the pages we make: PEP 700 (1.1) is what `size`, `upload-time` and
# `versions` need. A page that declares more keeps its own (see to_json_page).
API_VERSION = "1.1"
# Bounds on what we read. PyPI's largest project pages are a few MB in either form;
# these leave an order of magnitude of room and stop a runaway file from eating the
# origin's memory.
MAX_PAGE_BYTES = 64 * 1024 * 1024
MAX_FILES = 250_000

_API_RE = re.compile(r"^(\d+)\.(\d+)$")
_HASH_NAME_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_HEX_RE = re.compile(r"^[0-9a-fA-F]{8,256}$")
# PEP 792: the JSON `project-status` object's fields and their HTML meta names.
_STATUS_META = (("status", "pypi:project-status"), ("reason", "pypi:project-status-reason"))
_FRAGMENT_PREFERENCE = ("sha256", "sha512", "sha384", "sha224", "sha1", "md5")


class PageError(MirrorfleetError, ValueError):
    """A project page we cannot understand; the message names the page and the reason.

    A ValueError as well, so the commands that already turn ValueError into a one-line
    message (`origin import`, `demo-content`) report it the same way.
    """


@dataclass(frozen=True)
class FileFacts:
    """What the tree knows about a file that the HTML page does not say."""

    size: int
    mtime: float


# ---------------------------------------------------------------- reading


def parse_html(data: bytes, project: str, source: str = "page") -> dict[str, Any]:
    """The JSON-form dict of a PEP 503 project page (no `size`, `upload-time` or
    `versions`: HTML has none). `source` names the page in errors."""
    text = _decode(data, source)
    parser = _ProjectPage(source)
    try:
        parser.feed(text)
        parser.close()
    except PageError:
        raise
    except (ValueError, AssertionError) as exc:  # html.parser's own complaints
        raise PageError(f"{source}: not parseable as HTML: {exc}") from None
    if parser.open is not None:
        raise PageError(f"{source}: an <a> element is never closed")
    api = parser.api_version or "1.0"  # PEP 629: no version means 1.0
    _check_api(api, source)
    meta: dict[str, Any] = {"api-version": api}
    doc: dict[str, Any] = {"meta": meta, "name": normalize(project), "files": parser.files}
    if parser.status:
        doc["project-status"] = parser.status
    return doc


def parse_json(data: bytes, project: str, source: str = "page") -> dict[str, Any]:
    """A PEP 691 project page, checked where we rely on it and otherwise untouched."""
    text = _decode(data, source)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise PageError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PageError(f"{source}: a JSON page must be an object")
    meta = doc.get("meta")
    if not isinstance(meta, dict) or not isinstance(meta.get("api-version"), str):
        raise PageError(f"{source}: no meta.api-version")
    _check_api(meta["api-version"], source)
    name = doc.get("name")
    if not isinstance(name, str) or normalize(name) != normalize(project):
        raise PageError(f"{source}: names project {name!r}, not {project!r}")
    files = doc.get("files")
    if not isinstance(files, list):
        raise PageError(f"{source}: no files list")
    if len(files) > MAX_FILES:
        raise PageError(f"{source}: more than {MAX_FILES} files")
    seen: set[str] = set()
    for entry in files:
        _check_json_file(entry, source, seen)
    versions = doc.get("versions")
    if versions is not None and not (
        isinstance(versions, list) and all(isinstance(v, str) for v in versions)
    ):
        raise PageError(f"{source}: versions is not a list of strings")
    return doc


def _decode(data: bytes, source: str) -> str:
    if len(data) > MAX_PAGE_BYTES:
        raise PageError(f"{source}: larger than {MAX_PAGE_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PageError(f"{source}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _check_api(version: str, source: str) -> None:
    m = _API_RE.match(version)
    if not m:
        raise PageError(f"{source}: API version {version!r} is not Major.Minor")
    if m[1] != "1":
        # PEP 629: a client MUST fail on a major version it does not know; so do we.
        raise PageError(f"{source}: API version {version} (only 1.x is understood)")


def anchor_hrefs(data: bytes, source: str = "page") -> list[tuple[str, bool]]:
    """Every anchor's href (entities decoded) and whether it advertises `.metadata`,
    read leniently with the same tokenizer: publish must follow the links of any
    page the origin holds, including one parse_html refuses (link text that is not
    the file name, an API version it does not know). PageError only when the
    tokenizer itself gives up."""
    reader = _Anchors()
    try:
        reader.feed(data.decode("utf-8", "replace"))
        reader.close()
    except (ValueError, AssertionError) as exc:
        raise PageError(f"{source}: not parseable as HTML: {exc}") from None
    return reader.found


def _first_of_each(attrs: list[tuple[str, str | None]]) -> dict[str, str | None]:
    first: dict[str, str | None] = {}
    for key, value in attrs:
        first.setdefault(key, value)  # as browsers do: the first of a repeat counts
    return first


def _advertises_metadata(attrs: dict[str, str | None]) -> bool:
    """PEP 658/714: data-core-metadata, else data-dist-info-metadata; any value but
    "false" (no value at all included) advertises the file."""
    for key in ("data-core-metadata", "data-dist-info-metadata"):
        if key in attrs:
            return (attrs[key] or "").strip().lower() != "false"
    return False


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, bool]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            first = _first_of_each(attrs)
            if first.get("href"):
                self.found.append((first["href"] or "", _advertises_metadata(first)))


def _check_json_file(entry: object, source: str, seen: set[str]) -> None:
    if not isinstance(entry, dict):
        raise PageError(f"{source}: a files entry is not an object")
    filename, url = entry.get("filename"), entry.get("url")
    if not isinstance(filename, str) or not filename or not isinstance(url, str) or not url:
        raise PageError(f"{source}: a files entry lacks filename or url")
    where = f"{source}: {filename}"
    if filename in seen:
        raise PageError(f"{where}: listed twice")
    seen.add(filename)
    hashes = entry.get("hashes")
    if not isinstance(hashes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in hashes.items()
    ):
        raise PageError(f"{where}: hashes is not an object of strings")
    for key in ("core-metadata", "dist-info-metadata"):
        value = entry.get(key)
        if value is not None and not isinstance(value, bool | dict):
            raise PageError(f"{where}: {key} is neither a boolean nor hashes")
    yanked = entry.get("yanked")
    if yanked is not None and not isinstance(yanked, bool | str):
        raise PageError(f"{where}: yanked is neither a boolean nor a reason")
    size = entry.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise PageError(f"{where}: size is not a byte count")


class _ProjectPage(HTMLParser):
    """Anchors and the PEP 629/792 meta tags of one project page."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.files: list[dict[str, Any]] = []
        self.names: set[str] = set()
        self.open: tuple[dict[str, str | None], list[str]] | None = None
        self.api_version: str | None = None
        self.status: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        first = _first_of_each(attrs)
        if tag == "a":
            if self.open is not None:
                raise PageError(f"{self.source}: an <a> inside another <a>")
            self.open = (first, [])
        elif tag == "base":
            raise PageError(f"{self.source}: a <base> element moves every link; not supported")
        elif tag == "meta":
            self._meta(first)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            raise PageError(f"{self.source}: a self-closing <a/> names no file")
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self.open is not None:
            attrs, text = self.open
            self.open = None
            self._anchor(attrs, "".join(text).strip())

    def handle_data(self, data: str) -> None:
        if self.open is not None:
            self.open[1].append(data)

    def _meta(self, attrs: dict[str, str | None]) -> None:
        name, content = (attrs.get("name") or "").lower(), attrs.get("content")
        if content is None:
            return
        if name == "pypi:repository-version":
            self.api_version = content.strip()
        elif name == "pypi:project-status":
            self.status.setdefault("status", content)
        elif name == "pypi:project-status-reason":
            self.status.setdefault("reason", content)

    def _anchor(self, attrs: dict[str, str | None], text: str) -> None:
        href = attrs.get("href")
        if not href:
            raise PageError(f"{self.source}: an <a> without href ({text!r})")
        url, _, fragment = href.partition("#")
        where = f"{self.source}: {text or href}"
        last = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        if not text or last != text:
            # PEP 503: the text MUST be the file name the URL ends in.
            raise PageError(f"{where}: the link text is not the file name its URL ends in")
        if text in self.names:
            raise PageError(f"{where}: listed twice")
        if len(self.files) >= MAX_FILES:
            raise PageError(f"{self.source}: more than {MAX_FILES} files")
        self.names.add(text)
        entry: dict[str, Any] = {"filename": text, "url": url, "hashes": _fragment(fragment, where)}
        requires = attrs.get("data-requires-python")
        if requires is not None and requires.strip():
            entry["requires-python"] = requires
        core = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
        if "data-core-metadata" in attrs or "data-dist-info-metadata" in attrs:
            # PEP 714: data-core-metadata wins; JSON only ever gets the new key, since
            # pip 22.3 to 23.1 fail hard on `dist-info-metadata` in JSON.
            entry["core-metadata"] = _metadata_value(core, where)
        gpg = attrs.get("data-gpg-sig")
        if gpg is not None:
            if gpg not in ("true", "false"):
                raise PageError(f"{where}: data-gpg-sig is {gpg!r}, not true or false")
            entry["gpg-sig"] = gpg == "true"
        if "data-yanked" in attrs:
            reason = attrs["data-yanked"]
            entry["yanked"] = reason if reason else True  # PEP 592: no value, no reason
        provenance = attrs.get("data-provenance")
        if provenance:
            entry["provenance"] = provenance  # PEP 740
        self.files.append(entry)


def _fragment(fragment: str, where: str) -> dict[str, str]:
    if not fragment:
        return {}
    name, sep, value = fragment.partition("=")
    if not sep or not _HASH_NAME_RE.match(name.lower()) or not _HEX_RE.match(value):
        raise PageError(f"{where}: the URL fragment {fragment!r} is not <hashname>=<hex>")
    return {name.lower(): value.lower()}


def _metadata_value(value: str | None, where: str) -> bool | dict[str, str]:
    """PEP 658: `true`, or `<hashname>=<hex>` of the .metadata file."""
    if value is None or value == "true":
        return True
    if value == "false":
        return False
    name, sep, digest = value.partition("=")
    if not sep or not _HASH_NAME_RE.match(name.lower()) or not _HEX_RE.match(digest):
        raise PageError(f"{where}: core metadata {value!r} is neither true nor <hash>=<hex>")
    return {name.lower(): digest.lower()}


def metadata_advertised(entry: dict[str, Any]) -> bool:
    """Whether a client will fetch `<url>.metadata` for this file (PEP 714 order)."""
    value = entry.get("core-metadata", entry.get("dist-info-metadata"))
    return bool(value)


# ---------------------------------------------------------------- making pages


def to_json_page(
    doc: dict[str, Any], facts: Callable[[dict[str, Any]], FileFacts]
) -> dict[str, Any]:
    """`doc` completed into a PEP 700 page: every file's `size` and `upload-time`, the
    `versions` list, and an api-version of at least 1.1. What `doc` already says wins.

    `facts(entry)` gives the file's size and mtime. The mtime stands in for the upload
    time because nothing better exists: the HTML never had it, bandersnatch sets each
    file's mtime to PyPI's upload time (its storage's set_upload_time), and our own
    writers only create a file when it is first published; a hard-linked or copied
    import keeps it (copy2). A file whose mtime is older than the index itself is
    therefore the upload time, and at worst it is when this index first saw the file.
    """
    out = copy.deepcopy(doc)
    project = out["name"]
    versions: list[str] = []
    for entry in out["files"]:
        known = facts(entry)
        entry.setdefault("size", known.size)
        entry.setdefault("upload-time", to_iso(known.mtime))
        version = file_version(entry["filename"], project)
        if version is not None and version not in versions:
            versions.append(version)
    out.setdefault("versions", sorted(versions, key=version_key))
    api = out["meta"]["api-version"]
    if _api_tuple(api) < _api_tuple(API_VERSION):
        out["meta"]["api-version"] = API_VERSION
    return out


def render_json(doc: dict[str, Any]) -> bytes:
    """Compact, one line: the page is for machines, and it is the bigger of the two."""
    return (json.dumps(doc, separators=(",", ":")) + "\n").encode()


def render_html(doc: dict[str, Any]) -> bytes:
    """A PEP 503 page saying everything of `doc` that HTML can say."""
    name = html.escape(doc["name"])
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        f'    <meta name="pypi:repository-version" content="{_attr(doc["meta"]["api-version"])}">',
    ]
    status = doc.get("project-status")
    if isinstance(status, dict):
        for key, meta in _STATUS_META:
            if isinstance(status.get(key), str):
                lines.append(f'    <meta name="{meta}" content="{_attr(status[key])}">')
    lines += [f"    <title>Links for {name}</title>", "  </head>", "  <body>"]
    lines.append(f"    <h1>Links for {name}</h1>")
    lines += [f"    {_anchor(entry)}<br/>" for entry in doc["files"]]
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


def _anchor(entry: dict[str, Any]) -> str:
    href = entry["url"]
    hashes = entry.get("hashes") or {}
    pick = next((h for h in _FRAGMENT_PREFERENCE if h in hashes), None)
    if pick is None and hashes:
        pick = sorted(hashes)[0]
    if pick is not None:
        href += f"#{pick}={hashes[pick]}"
    attrs = [f'href="{_attr(href)}"']
    requires = entry.get("requires-python")
    if isinstance(requires, str) and requires:
        attrs.append(f'data-requires-python="{_attr(requires)}"')
    yanked = entry.get("yanked")
    if yanked:
        attrs.append(f'data-yanked="{_attr(yanked)}"' if isinstance(yanked, str) else "data-yanked")
    metadata = entry.get("core-metadata", entry.get("dist-info-metadata"))
    if metadata:
        value = "true"
        if isinstance(metadata, dict) and metadata:
            algo = next((h for h in _FRAGMENT_PREFERENCE if h in metadata), sorted(metadata)[0])
            value = f"{algo}={metadata[algo]}"
        # PEP 714: the new name MUST be there; the old one MAY, equal, for older clients.
        attrs.append(f'data-core-metadata="{_attr(value)}"')
        attrs.append(f'data-dist-info-metadata="{_attr(value)}"')
    if isinstance(entry.get("gpg-sig"), bool):
        attrs.append(f'data-gpg-sig="{"true" if entry["gpg-sig"] else "false"}"')
    if isinstance(entry.get("provenance"), str):
        attrs.append(f'data-provenance="{_attr(entry["provenance"])}"')
    return f"<a {' '.join(attrs)}>{html.escape(entry['filename'])}</a>"


def html_to_json(
    data: bytes, project: str, facts: Callable[[dict[str, Any]], FileFacts], source: str = "page"
) -> bytes:
    """The PEP 691 page for an HTML-only project."""
    return render_json(to_json_page(parse_html(data, project, source), facts))


def json_to_html(data: bytes, project: str, source: str = "page") -> bytes:
    """The PEP 503 page for a JSON-only project."""
    return render_html(parse_json(data, project, source))


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _api_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)


def to_iso(mtime: float) -> str:
    """PEP 700's upload-time: UTC, whole seconds (the fraction is optional)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(mtime)))
