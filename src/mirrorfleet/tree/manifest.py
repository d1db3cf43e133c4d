"""Per-project state, signed and sharded: which serial last changed each project,
and the hash of its index page. Plus a bounded journal of what each serial changed.

Sharding by a hash of the project name keeps each file small at PyPI's ~600k
projects (256 shards of a few thousand entries), so a client checking one project
fetches one small file, and a publish rewrites only the shards it touched.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.tree.files import META_DIR, atomic_write
from mirrorfleet.tree.signed import BadSignature, sign, verify

MANIFEST_DIR = f"{META_DIR}/manifest"
JOURNAL_PATH = f"{META_DIR}/journal.json"
JOURNAL_MAX_ENTRIES = 1000
JOURNAL_MAX_NAMES = 100_000

# project -> (serial that last changed it, sha256 of its index page)
ProjectState = dict[str, tuple[int, str]]


def shard_of(project: str) -> str:
    return hashlib.sha256(project.encode()).hexdigest()[:2]


def shard_path(project_or_shard: str) -> str:
    shard = project_or_shard if len(project_or_shard) == 2 else shard_of(project_or_shard)
    return f"{MANIFEST_DIR}/{shard}.json"


def parse_shard(raw: bytes, keys: Sequence[Ed25519PublicKey]) -> tuple[int, ProjectState]:
    data = verify(raw, keys)
    try:
        projects = {name: (int(s), str(h)) for name, (s, h) in data["projects"].items()}
        return int(data["serial"]), projects
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadSignature(f"malformed manifest shard: {exc}") from None


def load_manifest(tree: Path, keys: Sequence[Ed25519PublicKey]) -> ProjectState:
    state: ProjectState = {}
    directory = tree / MANIFEST_DIR
    if directory.is_dir():
        for path in sorted(directory.glob("??.json")):
            state.update(parse_shard(path.read_bytes(), keys)[1])
    return state


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
    touched = {shard_of(p) for p in (*update.changed, *update.removed)}
    by_shard: dict[str, dict[str, list[Any]]] = {s: {} for s in touched}
    for project, (serial, digest) in new.items():
        shard = shard_of(project)
        if shard in by_shard:
            by_shard[shard][project] = [serial, digest]
    for shard, projects in sorted(by_shard.items()):
        doc = {"v": 1, "serial": update.serial, "shard": shard, "projects": projects}
        atomic_write(tree / shard_path(shard), sign(doc, key), tree)
    return new


def load_journal(tree: Path, keys: Sequence[Ed25519PublicKey]) -> list[list[Any]]:
    try:
        raw = (tree / JOURNAL_PATH).read_bytes()
    except FileNotFoundError:
        return []
    entries = verify(raw, keys).get("entries", [])
    return entries if isinstance(entries, list) else []


def append_journal(
    tree: Path,
    entries: list[list[Any]],
    update: ManifestUpdate,
    key: Ed25519PrivateKey,
) -> list[list[Any]]:
    """Keep the newest entries only, bounded in count and in names listed."""
    entries = [*entries, [update.serial, int(time.time()), [*update.changed, *update.removed]]]
    entries = entries[-JOURNAL_MAX_ENTRIES:]
    while len(entries) > 1 and sum(len(e[2]) for e in entries) > JOURNAL_MAX_NAMES:
        entries.pop(0)
    doc = {"v": 1, "serial": update.serial, "entries": entries}
    atomic_write(tree / JOURNAL_PATH, sign(doc, key), tree)
    return entries


def hash_pages(pages: Iterable[tuple[str, Path]]) -> dict[str, str]:
    return {name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in pages}
