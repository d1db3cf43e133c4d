"""What the local proxy proves before pip or uv sees a byte, as pure functions.

The chain: a stamp the pinned keys sign names the snapshot; the snapshot names each
manifest shard by sha256; the shard names the sha256 of each project's HTML page;
the page names each file's hash (its `#sha256=` fragment) and each `.metadata`
file's (`data-core-metadata`). Only the HTML page is in the chain (the shards hash
`index.html`), so the proxy serves every project page as PEP 503 HTML, which pip
and uv both read. Nothing here touches the network: upstream.py fetches, this
module judges.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from mirrorfleet.content.dists import SDIST_EXTS, normalize
from mirrorfleet.content.pages import PageError, parse_html
from mirrorfleet.errors import MirrorfleetError

# Hashes strong enough to stand in for the signature chain: a page naming only md5
# or sha1 for a file proves nothing about its bytes.
STRONG_HASHES = ("sha256", "sha512", "sha384")


class Unverified(MirrorfleetError):
    """A mirror's answer is not what the origin signed."""


@dataclass(frozen=True)
class Digest:
    name: str  # one of STRONG_HASHES
    value: str  # lowercase hex

    def hasher(self):  # type: ignore[no-untyped-def]
        return hashlib.new(self.name)


@dataclass(frozen=True)
class VerifiedPage:
    """A project page whose sha256 its signed shard names, and what it proves in turn:
    the expected hash of every file and `.metadata` file it links on the mirror's tree
    (by tree path; None when the page gives no strong hash, so it cannot be passed on)."""

    project: str
    body: bytes
    files: Mapping[str, Digest | None]


def page_path(project: str) -> str:
    return f"simple/{project}/index.html"


def tree_path(url_path: str) -> str:
    """A request or link path as the tree path it names, percent-decoding undone and
    `..` resolved, without the leading slash; '' for anything that climbs above."""
    path = posixpath.normpath("/" + unquote(url_path).lstrip("/"))
    return path.lstrip("/")


def check_page(project: str, body: bytes, expected_sha256: str) -> VerifiedPage:
    """The page, if its bytes are those the shard names; Unverified otherwise."""
    if hashlib.sha256(body).hexdigest() != expected_sha256:
        raise Unverified(
            f"simple/{project}/ is not the page its signed manifest names "
            "(altered, or from another serial)"
        )
    try:
        doc = parse_html(body, project, page_path(project))
    except PageError as exc:
        # signed as it is: the origin published a page pip cannot read either
        raise Unverified(f"the signed page cannot be read: {exc}") from None
    files: dict[str, Digest | None] = {}
    base = f"/simple/{project}/"
    for entry in doc["files"]:
        target = urlsplit(urljoin(base, entry["url"]))
        if target.scheme or target.netloc:
            continue  # another host's file: pip fetches it there, not through us
        path = tree_path(target.path)
        files[path] = strong(entry.get("hashes", {}))
        metadata = entry.get("core-metadata")
        if metadata:
            files[f"{path}.metadata"] = strong(metadata) if isinstance(metadata, dict) else None
    return VerifiedPage(project, body, files)


def strong(hashes: Mapping[str, str]) -> Digest | None:
    for name in STRONG_HASHES:
        if hashes.get(name):
            return Digest(name, hashes[name].lower())
    return None


def project_of_file(path: str) -> str | None:
    """The project a distribution file most likely belongs to, from its name: how the
    proxy finds the page that proves a file pip asks for when it read that page from
    a cache (uv keeps pages between runs) rather than through this process."""
    name = posixpath.basename(path)
    if name.endswith(".metadata"):
        name = name[: -len(".metadata")]
    if name.endswith((".whl", ".egg")):
        return normalize(name.split("-", 1)[0]) if "-" in name else None
    for ext in SDIST_EXTS:
        if name.endswith(ext) and "-" in name:
            return normalize(name[: -len(ext)].rsplit("-", 1)[0])
    return None
