"""Bounded reads of a mirror's files over HTTP, and what a failed read means: the
tree is wrong (SpotCheckFailed) or the mirror could not say (Unreachable). The
monitor's spot checks, the agent's change feed and the client all read this way."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import unquote, urlsplit

from mirrorfleet import web
from mirrorfleet.content.pages import MAX_PAGE_BYTES
from mirrorfleet.errors import MirrorfleetError

# An index page, in any form: the origin refuses to import a bigger one, so no page it
# signs is bigger, and a mirror serving one is not serving the signed page.
MAX_PAGE = MAX_PAGE_BYTES


class SpotCheckFailed(MirrorfleetError):
    """The tree does not hold what its signed manifest says it holds, or serves it
    so that a client would fail.

    `check` names which kind of check failed, from a fixed few (CHECKS), so the
    monitor can count failures by kind without a label per message."""

    def __init__(self, message: str, check: str = "tree") -> None:
        super().__init__(message)
        self.check = check


# tree: shards, pages and files against their signatures and hashes; clients: what
# pip and uv get from a project's folder; metadata: the .metadata files pages advertise
CHECKS = ("tree", "clients", "metadata")


class Unreachable(MirrorfleetError):
    """A read failed for a reason that says nothing about the tree (timeout, 5xx)."""


@dataclass(frozen=True)
class Fetched:
    body: bytes
    modified: float | None  # Last-Modified, in seconds since the epoch


def fetch(url: str, timeout: float, limit: int) -> bytes | None:
    """The body, or None on 404; Unreachable for anything that is not an answer."""
    fetched = fetch_file(url, timeout, limit)
    return fetched.body if fetched else None


def fetch_file(url: str, timeout: float, limit: int) -> Fetched | None:
    """fetch, with the file's Last-Modified: a copy that keeps it looks unchanged to
    the next walk's quick check (size and mtime to the nanosecond), because the
    origin writes records at whole seconds."""
    try:
        answer = web.get(url, limit, timeout)
    except web.READ_ERRORS as exc:
        raise Unreachable(f"{url}: {exc}") from None
    if answer.status in (404, 410):
        return None
    if answer.status != 200:
        raise Unreachable(f"{url}: HTTP {answer.status}")
    if answer.over(limit):
        raise SpotCheckFailed(f"{url} is larger than {limit} bytes")
    return Fetched(answer.body, _http_date(answer.modified))


def _http_date(value: str | None) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp() if value else None
    except (TypeError, ValueError):
        return None  # a bad date only costs the next walk a copy


def within(base_url: str, url: str) -> bool:
    """Whether url is on the mirror's host, inside its tree: a page's link to another
    host, or `../` above the tree, is not the mirror's to serve and is never fetched."""
    base, target = urlsplit(base_url), urlsplit(url)
    prefix = base.path if base.path.endswith("/") else base.path.rsplit("/", 1)[0] + "/"
    path = posixpath.normpath(unquote(target.path))
    return (target.scheme, target.netloc) == (base.scheme, base.netloc) and (path + "/").startswith(
        prefix
    )
