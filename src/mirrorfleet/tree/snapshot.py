"""The snapshot: one signed list of every manifest shard of a serial, by hash.

Each shard is signed on its own, so without this a mirror could serve shard `ab`
from serial 800 beside a stamp of serial 900: every signature checks, and the view
never existed (TUF's mix-and-match). The stamp names the snapshot's sha256, the
snapshot names each shard's, so one stamp pins the whole metadata set; whoever reads
a shard checks it against the snapshot of the stamp it trusts.

At PyPI's size it is 256 entries (about 24 KB). It is rewritten only for the shards a
publish touched (the others keep their entries) and read whole only by a full sync.
Served at `.mirror/snapshot.json`, written before the stamp (so a reader that reads
the stamp first finds a snapshot at least as new) and, on a mirror, by the agent
itself from the bytes the stamp names, never by rsync.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.tree.files import META_DIR
from mirrorfleet.tree.manifest import MANIFEST_DIR, shard_path
from mirrorfleet.tree.signed import BadSignature, sign, verify

SNAPSHOT_PATH = f"{META_DIR}/snapshot.json"
SNAPSHOT_VERSION = 1
# 256 shards of about 90 bytes each; room for a preset with 16x as many
MAX_SNAPSHOT = 512 * 1024
SHARD_ID_CHARS = "0123456789abcdef"


class MixedSnapshot(BadSignature):
    """Metadata that does not belong to the snapshot its stamp names."""


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int


@dataclass(frozen=True)
class Snapshot:
    serial: int
    shards: Mapping[str, Entry]

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        doc = {
            "v": SNAPSHOT_VERSION,
            "serial": self.serial,
            "shards": {s: [e.sha256, e.size] for s, e in sorted(self.shards.items())},
        }
        return sign(doc, key)

    def check_shard(self, shard: str, raw: bytes) -> None:
        """MixedSnapshot unless `raw` is exactly the shard this snapshot names."""
        entry = self.shards.get(shard)
        if entry is None:
            raise MixedSnapshot(
                f"{shard_path(shard)} is not in the snapshot of serial {self.serial}"
            )
        if len(raw) != entry.size or digest(raw) != entry.sha256:
            raise MixedSnapshot(
                f"{shard_path(shard)} is not the one serial {self.serial}'s snapshot names "
                "(a shard from another serial)"
            )

    def updated(self, serial: int, written: Mapping[str, bytes]) -> Snapshot:
        """The next serial's snapshot: the shards it wrote, the others as they were."""
        shards = dict(self.shards)
        shards.update({s: Entry(digest(raw), len(raw)) for s, raw in written.items()})
        return Snapshot(serial, shards)


def parse_snapshot(raw: bytes, keys: Sequence[Ed25519PublicKey], expected: str) -> Snapshot:
    """Verify the bytes against the sha256 the stamp names, then the signature."""
    if len(raw) > MAX_SNAPSHOT:
        raise BadSignature(f"snapshot of {len(raw)} bytes is larger than {MAX_SNAPSHOT}")
    if digest(raw) != expected:
        raise MixedSnapshot("the snapshot is not the one the stamp names")
    data = verify(raw, keys)
    try:
        serial, items = int(data["serial"]), data["shards"].items()
        shards = {str(s): Entry(str(h), int(n)) for s, (h, n) in items}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadSignature(f"malformed snapshot: {exc!r}") from None
    for shard in shards:
        if len(shard) != 2 or shard.strip(SHARD_ID_CHARS):
            raise BadSignature(f"snapshot names a bad shard {shard!r}")
    return Snapshot(serial, shards)


def read_local_snapshot(
    tree: Path, keys: Sequence[Ed25519PublicKey], expected: str
) -> Snapshot | None:
    """The snapshot a tree serves; None when it is missing or not the expected one."""
    try:
        return parse_snapshot((tree / SNAPSHOT_PATH).read_bytes(), keys, expected)
    except (FileNotFoundError, BadSignature):
        return None


def snapshot_of_tree(tree: Path, serial: int) -> Snapshot:
    """Every shard on disk, hashed: the first snapshot of a tree, and a full publish's."""
    directory = tree / MANIFEST_DIR
    shards = {}
    if directory.is_dir():
        for path in sorted(directory.glob("??.json")):
            raw = path.read_bytes()
            shards[path.name[:2]] = Entry(digest(raw), len(raw))
    return Snapshot(serial, shards)


def mismatched_shards(tree: Path, snapshot: Snapshot) -> list[str]:
    """Shards on disk that differ from the snapshot, or that it names and are missing:
    a full sync's check that what rsync brought is the serial it will stamp."""
    on_disk = snapshot_of_tree(tree, snapshot.serial).shards
    names = sorted(set(on_disk) | set(snapshot.shards))
    return [s for s in names if on_disk.get(s) != snapshot.shards.get(s)]
