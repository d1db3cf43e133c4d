"""Per-project state, signed and sharded: which serial last changed each project,
and the hash of its index page. What each serial changed is in its change record
(tree/changes.py).

Sharding by a hash of the project name keeps each file small at PyPI's ~600k
projects (256 shards of a few thousand entries), so a client checking one project
fetches one small file, and a publish rewrites only the shards it touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.tree.files import META_DIR, atomic_write
from mirrorfleet.tree.signed import BadSignature, sign, verify

MANIFEST_DIR = f"{META_DIR}/manifest"
# The most a reader takes of one shard. PyPI: ~600k projects / 256 shards = ~2,400
# entries of ~110 bytes (name, serial, sha256) = ~260 KB; 8 MiB leaves 30x for growth.
MAX_SHARD = 8 * 1024 * 1024

# project -> (serial that last changed it, sha256 of its index page)
ProjectState = dict[str, tuple[int, str]]


def shard_of(project: str) -> str:
    return hashlib.sha256(project.encode()).hexdigest()[:2]


def shard_path(project_or_shard: str) -> str:
    shard = project_or_shard if len(project_or_shard) == 2 else shard_of(project_or_shard)
    return f"{MANIFEST_DIR}/{shard}.json"


def shard_of_path(path: str) -> str | None:
    """The shard id a tree path is, or None when it is not a shard."""
    folder, _, name = path.rpartition("/")
    if folder != MANIFEST_DIR or len(name) != 7 or not name.endswith(".json"):
        return None
    return name[:2]


def parse_shard(raw: bytes, keys: Sequence[Ed25519PublicKey]) -> tuple[int, ProjectState]:
    data = verify(raw, keys)
    try:
        projects = {name: (int(s), str(h)) for name, (s, h) in data["projects"].items()}
        return int(data["serial"]), projects
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadSignature(f"malformed manifest shard: {exc}") from None


def load_manifest(tree: Path, keys: Sequence[Ed25519PublicKey]) -> ProjectState:
    """Every shard: the whole tree's state (a full publish, the tests)."""
    state: ProjectState = {}
    directory = tree / MANIFEST_DIR
    if directory.is_dir():
        for path in sorted(directory.glob("??.json")):
            state.update(parse_shard(path.read_bytes(), keys)[1])
    return state


def load_shard(
    tree: Path, shard: str, keys: Sequence[Ed25519PublicKey]
) -> tuple[int, ProjectState] | None:
    """One shard, verified: (serial that wrote it, its projects); None if it is missing."""
    try:
        raw = (tree / shard_path(shard)).read_bytes()
    except FileNotFoundError:
        return None
    return parse_shard(raw, keys)


def shard_document(
    shard: str, projects: Mapping[str, tuple[int, str]], serial: int, key: Ed25519PrivateKey
) -> bytes:
    doc = {
        "v": 1,
        "serial": serial,
        "shard": shard,
        "projects": {name: [s, h] for name, (s, h) in sorted(projects.items())},
    }
    return sign(doc, key)


class MissingShard(MirrorfleetError):
    """A shard the tree had is gone: rewriting it from one change would drop the rest."""


def update_shards(
    tree: Path,
    keys: Sequence[Ed25519PublicKey],
    key: Ed25519PrivateKey,
    serial: int,
    changed: Mapping[str, str],
    removed: Iterable[str],
    existing: Container[str] = (),
) -> dict[str, bytes]:
    """The new bytes of the shards a change touches, reading only those shards: shard
    id -> signed shard. `changed` maps project -> sha256 of its page, all set to
    `serial`; `removed` projects are dropped. A shard named in `existing` must be there
    (MissingShard). Writes nothing."""
    by_shard: dict[str, list[tuple[str, str | None]]] = {}
    for project, digest in changed.items():
        by_shard.setdefault(shard_of(project), []).append((project, digest))
    for project in removed:
        by_shard.setdefault(shard_of(project), []).append((project, None))
    out: dict[str, bytes] = {}
    for shard, edits in sorted(by_shard.items()):
        loaded = load_shard(tree, shard, keys)
        if loaded is None and shard in existing:
            raise MissingShard(f"manifest shard {shard_path(shard)} is missing from the tree")
        projects = dict(loaded[1]) if loaded else {}
        for project, digest in edits:
            if digest is None:
                projects.pop(project, None)
            else:
                projects[project] = (serial, digest)
        out[shard] = shard_document(shard, projects, serial, key)
    return out


@dataclass
class ManifestUpdate:
    serial: int
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.changed or self.removed)


def diff(old: ProjectState, hashes: Mapping[str, str], serial: int) -> ManifestUpdate:
    update = ManifestUpdate(serial=serial)
    update.changed = sorted(p for p, h in hashes.items() if old.get(p, (0, ""))[1] != h)
    update.removed = sorted(set(old) - set(hashes))
    return update


def apply_update(
    tree: Path,
    old: ProjectState,
    hashes: Mapping[str, str],
    update: ManifestUpdate,
    key: Ed25519PrivateKey,
) -> ProjectState:
    """Rewrite only the shards the update touches; return the new project state."""
    new = dict(old)
    for project in update.removed:
        new.pop(project, None)
    for project in update.changed:
        new[project] = (update.serial, hashes[project])
    for shard, raw in full_shards(new, update, key).items():
        atomic_write(tree / shard_path(shard), raw, tree)
    return new


def full_shards(
    new: ProjectState, update: ManifestUpdate, key: Ed25519PrivateKey, every: bool = False
) -> dict[str, bytes]:
    """The signed shards `update` touches (`every`: all the state's), from the whole new
    state; writes nothing."""
    touched = {shard_of(p) for p in (*update.changed, *update.removed)}
    if every:
        touched |= {shard_of(p) for p in new}
    by_shard: dict[str, dict[str, tuple[int, str]]] = {s: {} for s in touched}
    for project, entry in new.items():
        shard = shard_of(project)
        if shard in by_shard:
            by_shard[shard][project] = entry
    return {
        shard: shard_document(shard, projects, update.serial, key)
        for shard, projects in sorted(by_shard.items())
    }


def hash_pages(pages: Iterable[tuple[str, Path]]) -> dict[str, str]:
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in pages}
