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

Since version 3 each record names the sha256 of the one before it (`prev`), and the
stamp names the newest one's: the records a reader fetches chain to the stamp it
trusts, so a record signed for the same serial by a publish that never finished
(or any other stray) is refused, not merged.
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
from mirrorfleet.tree.snapshot import SNAPSHOT_PATH, MixedSnapshot, digest
from mirrorfleet.tree.stamp import STAMP_PATH
from mirrorfleet.tree.trust import KEYS_PATH

CHANGES_DIR = f"{META_DIR}/changes"
RECORD_VERSION = 3
MAX_RECORD = 32 * 1024 * 1024  # about 250,000 paths; a publish naming more is incomplete
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
    prev: str = ""  # sha256 of the record before; "" when there was none to name

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        doc = {
            "v": RECORD_VERSION,
            "prev": self.prev,
            "serial": self.serial,
            "changed": self.changed,
            "written": [[w.path, w.size, w.sha256] for w in self.written],
            "removed": self.removed,
            "complete": self.complete,
            "keep": self.keep,
        }
        return sign(doc, key)


# what the sync itself writes, from bytes it verified, and no record may name
SYNC_WRITES = (STAMP_PATH, SNAPSHOT_PATH, KEYS_PATH)


def check_path(path: object) -> str:
    """A path a record may name: relative, normalised, inside the tree, not the stamp.

    The record is signed, but a mirror still never lets it name a file outside its
    tree or the files only it writes."""
    if not isinstance(path, str) or not path or "\0" in path or "\\" in path:
        raise BadSignature(f"record names a bad path {path!r}")
    if path.startswith("/") or posixpath.normpath(path) != path or path.split("/")[0] == "..":
        raise BadSignature(f"record names a path outside the tree: {path!r}")
    if path in SYNC_WRITES or path.startswith(f"{CHANGES_DIR}/"):
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
        if data.get("v", 1) < 2:  # v1 named projects only
            return ChangeRecord(serial=serial, changed=changed, complete=False)
        written = [_written(item) for item in data["written"]]
        removed = [check_path(path) for path in data["removed"]]
        complete, keep = data["complete"], data["keep"]
        prev = data["prev"] if data["v"] >= 3 else ""  # v2: no chain, checks fail
    except (KeyError, TypeError, ValueError) as exc:
        raise BadSignature(f"malformed change record {serial}: {exc!r}") from None
    if not isinstance(complete, bool) or not isinstance(keep, int) or keep < 1:
        raise BadSignature(f"malformed change record {serial}: complete/keep")
    if not isinstance(prev, str) or (prev and not SHA256_RE.fullmatch(prev)):
        raise BadSignature(f"malformed change record {serial}: prev")
    return ChangeRecord(serial, changed, written, removed, complete, keep, prev)


def check_chain(records: Sequence[tuple[ChangeRecord, bytes]], newest: str) -> None:
    """MixedSnapshot unless the records (consecutive serials, oldest first) are the
    ones whose newest hashes to `newest` (the stamp's `record`) and each names the
    one before it."""
    expected = newest
    for record, raw in reversed(records):
        if digest(raw) != expected:
            raise MixedSnapshot(
                f"change record {record.serial} is not the one the stamp's chain names "
                "(a record from a publish that was never stamped, or another fleet's)"
            )
        expected = record.prev


def _written(item: object) -> Written:
    if not isinstance(item, list) or len(item) != 3:
        raise BadSignature(f"malformed written entry {item!r}")
    path, size, digest = item
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadSignature(f"bad size for {path!r}")
    if digest and not (isinstance(digest, str) and SHA256_RE.fullmatch(digest)):
        raise BadSignature(f"bad sha256 for {path!r}")
    return Written(check_path(path), size, digest)


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
