"""The signed change record of each serial: the feed mirrors sync from.

Serial N's record (`.mirror/changes/N.json`) names every path N wrote or removed
under the tree: content files with their size, index pages and `.mirror/` files
with size and sha256. It is signed and bound to its serial, so a mirror k serials
behind fetches k small records, verifies each, and copies exactly the union of
their paths (CPAN's RECENT files and quick-fedora-mirror's file lists do the same,
unsigned). A record that cannot say what changed (the first publish, a full
re-hash) is `complete = False`: whoever reads it syncs the whole tree instead.

The per-project names (`changed`) are what a client's per-project freshness
check reads; they were the whole record in version 1.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.config import KEEP_RECORDS
from mirrorfleet.tree.files import META_DIR
from mirrorfleet.tree.signed import BadSignature, sign, verify

CHANGES_DIR = f"{META_DIR}/changes"
RECORD_VERSION = 2
# KEEP_RECORDS (how many records the origin keeps) lives in config.py, the origin's
# `keep_records` default, and is imported from there: config sits below tree/.
SHA256_RE = re.compile(r"[0-9a-f]{64}")


def changes_path(serial: int) -> str:
    return f"{CHANGES_DIR}/{serial}.json"


@dataclass(frozen=True)
class Written:
    """A file as serial N left it: content has no hash (its page carries it)."""

    path: str
    size: int
    sha256: str = ""


@dataclass
class ChangeRecord:
    serial: int
    changed: list[str] = field(default_factory=list)  # projects changed or removed
    written: list[Written] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    complete: bool = True  # False: the paths are not known, sync everything
    keep: int = KEEP_RECORDS  # records the origin keeps: how far back the feed reaches

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        doc = {
            "v": RECORD_VERSION,
            "serial": self.serial,
            "changed": self.changed,
            "written": [[w.path, w.size, w.sha256] for w in self.written],
            "removed": self.removed,
            "complete": self.complete,
            "keep": self.keep,
        }
        return sign(doc, key)


def check_path(path: object) -> str:
    """A path a record may name: relative, normalised, inside the tree, not the stamp.

    The record is signed, but a mirror still never lets it name a file outside its
    tree or the files only it writes."""
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path:
        raise BadSignature(f"record names a bad path {path!r}")
    if path.startswith("/") or posixpath.normpath(path) != path or path.split("/")[0] == "..":
        raise BadSignature(f"record names a path outside the tree: {path!r}")
    if path == f"{META_DIR}/stamp.json" or path.startswith(f"{CHANGES_DIR}/"):
        raise BadSignature(f"record names a file only the sync writes: {path!r}")
    return path


def parse_record(raw: bytes, keys: Sequence[Ed25519PublicKey], serial: int) -> ChangeRecord:
    """Serial's record, verified; BadSignature unless it is exactly that serial's.

    A version 1 record lists projects only: it comes back `complete = False`."""
    data = verify(raw, keys)
    if data.get("serial") != serial:
        raise BadSignature(f"not the change record of serial {serial}")
    try:
        changed = [str(name) for name in data["changed"]]
        if data.get("v", 1) < RECORD_VERSION:
            return ChangeRecord(serial=serial, changed=changed, complete=False)
        written = [_written(item) for item in data["written"]]
        removed = [check_path(path) for path in data["removed"]]
        complete, keep = data["complete"], data["keep"]
    except (KeyError, TypeError, ValueError) as exc:
        raise BadSignature(f"malformed change record {serial}: {exc!r}") from None
    if not isinstance(complete, bool) or not isinstance(keep, int) or keep < 1:
        raise BadSignature(f"malformed change record {serial}: complete/keep")
    return ChangeRecord(serial, changed, written, removed, complete, keep)


def _written(item: object) -> Written:
    if not isinstance(item, list) or len(item) != 3:
        raise BadSignature(f"malformed written entry {item!r}")
    path, size, digest = item
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadSignature(f"bad size for {path!r}")
    if digest and not (isinstance(digest, str) and SHA256_RE.fullmatch(digest)):
        raise BadSignature(f"bad sha256 for {path!r}")
    return Written(check_path(path), size, digest)


def parse_changes(raw: bytes, keys: Sequence[Ed25519PublicKey], serial: int) -> list[str]:
    """The projects `serial` changed (the client's per-project check)."""
    return parse_record(raw, keys, serial).changed


@dataclass
class Delta:
    """What a mirror must do to go from serial `since` to `until`: the union of the
    records between, the newest word on each path winning."""

    since: int
    until: int
    written: dict[str, Written] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)

    @property
    def size(self) -> int:
        return len(self.written) + len(self.removed)


def merge(since: int, records: Iterable[ChangeRecord]) -> Delta | None:
    """The delta over consecutive complete records; None when one is incomplete or
    a serial is missing (the caller syncs everything)."""
    ordered = sorted(records, key=lambda r: r.serial)
    delta = Delta(since=since, until=since)
    for record in ordered:
        if record.serial != delta.until + 1 or not record.complete:
            return None
        for item in record.written:
            delta.written[item.path] = item
            delta.removed.discard(item.path)
        for path in record.removed:
            delta.written.pop(path, None)
            delta.removed.add(path)
        delta.until = record.serial
    return delta
