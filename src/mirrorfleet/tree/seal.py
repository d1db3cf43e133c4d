"""Sealing a serial: the snapshot of its shards, then the stamp naming the snapshot
and the serial's change record. The last two writes of every publish (and of every
test that plays the origin), in that order: a reader that reads the stamp first
always finds a snapshot at least as new.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.config import STAMP_LIFETIME
from mirrorfleet.errors import UserError
from mirrorfleet.tree.changes import changes_path
from mirrorfleet.tree.files import atomic_write
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.snapshot import SNAPSHOT_PATH, Snapshot, digest, snapshot_of_tree
from mirrorfleet.tree.stamp import NOTHING, STAMP_PATH, Stamp
from mirrorfleet.tree.trust import KEYS_PATH, KeysDocument, document_version, valid_online


def seal(
    tree: Path,
    key: Ed25519PrivateKey,
    serial: int,
    origin: str,
    lifetime: int = STAMP_LIFETIME,
    snapshot: Snapshot | None = None,
    write: bool = True,
    keys: int = 0,
) -> tuple[bytes, bytes]:
    """Sign `snapshot` (default: every shard on disk) and the stamp over it and the
    record on disk (a serial without one names the empty document, which no record
    matches: readers then walk the tree). Returns (snapshot, stamp) bytes, written
    into the tree unless `write` is False."""
    snapshot_raw = (snapshot or snapshot_of_tree(tree, serial)).sign(key)
    try:
        record = digest((tree / changes_path(serial)).read_bytes())
    except FileNotFoundError:
        record = NOTHING
    stamp = Stamp.new(serial, origin, digest(snapshot_raw), record, lifetime, keys).sign(key)
    if write:
        atomic_write(tree / SNAPSHOT_PATH, snapshot_raw, tree)
        atomic_write(tree / STAMP_PATH, stamp, tree)
    return snapshot_raw, stamp


def publish_keys(tree: Path, document: Path) -> int:
    """Serve the operator's root-signed keys document (tree/trust.py) at KEYS_PATH,
    before the stamp that names its version; the version, 0 when the origin has none
    (its pinned key signs directly)."""
    if document == Path():
        return 0
    try:
        raw = document.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the keys document {document}: {exc.strerror}") from None
    version = document_version(raw)
    atomic_write(tree / KEYS_PATH, raw, tree, unless_same=True)
    return version


def origin_keys(key: Ed25519PrivateKey, document: Path) -> list[Ed25519PublicKey]:
    """What the origin reads its own tree with: its key, and the online keys its keys
    document certifies now. After a rotation the shards and records the old key
    signed stay until rewritten (`origin publish --full` re-signs every shard);
    after a revocation they no longer count, and the publish says so."""
    keys = [key.public_key()]
    if document == Path():
        return keys
    try:
        doc = KeysDocument.from_signed(json.loads(document.read_bytes())["signed"])
    except (OSError, ValueError, KeyError, TypeError, BadSignature) as exc:
        raise UserError(f"cannot read the keys document {document}: {exc}") from None
    return keys + [c.public for c in valid_online(doc, int(time.time()))]
