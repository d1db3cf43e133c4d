"""Sealing a serial: the snapshot of its shards, then the stamp naming the snapshot
and the serial's change record. The last two writes of every publish (and of every
test that plays the origin), in that order: a reader that reads the stamp first
always finds a snapshot at least as new.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.config import STAMP_LIFETIME
from mirrorfleet.tree.changes import changes_path
from mirrorfleet.tree.files import atomic_write
from mirrorfleet.tree.snapshot import SNAPSHOT_PATH, Snapshot, digest, snapshot_of_tree
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp


def seal(
    tree: Path,
    key: Ed25519PrivateKey,
    serial: int,
    origin: str,
    lifetime: int = STAMP_LIFETIME,
    snapshot: Snapshot | None = None,
    write: bool = True,
) -> tuple[bytes, bytes]:
    """Sign `snapshot` (default: every shard on disk) and the stamp over it and the
    record on disk (a serial without one names the empty document, which no record
    matches: readers then walk the tree). Returns (snapshot, stamp) bytes, written
    into the tree unless `write` is False."""
    snapshot_raw = (snapshot or snapshot_of_tree(tree, serial)).sign(key)
    try:
        record = digest((tree / changes_path(serial)).read_bytes())
    except FileNotFoundError:
        record = digest(b"")
    stamp = Stamp.new(serial, origin, digest(snapshot_raw), record, lifetime).sign(key)
    if write:
        atomic_write(tree / SNAPSHOT_PATH, snapshot_raw, tree)
        atomic_write(tree / STAMP_PATH, stamp, tree)
    return snapshot_raw, stamp
