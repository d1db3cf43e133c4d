"""The incremental sync: copy exactly what the records name, in the full sync's order.

1. Content: the written content paths, `rsync --files-from`, adds only, straight
   into the tree. They are new names (a published file name never changes
   content), so nothing served links them yet.
2. Pages and `.mirror/` files: the written ones, into the staging folder, each
   checked against the size and sha256 its newest record gives. A mismatch means
   upstream moved on since its stamp, or does not hold what it signed; either way
   nothing served has changed yet.
3. The records themselves join the staged files, so a mirror below this one can
   sync from it by the same feed.
4. The staged files move in deepest first, then the removed paths go (with the
   folders they leave empty). The caller writes the stamp last.

Its cost follows the change: rsync never walks the tree, and nothing here lists a
folder except the staging folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from mirrorfleet.agent.feed import Feed
from mirrorfleet.agent.rsync import (
    STAGING_DIR,
    RsyncFailed,
    SyncError,
    TooLarge,
    move_staged,
    run_rsync,
    write_list,
)
from mirrorfleet.config import AgentConfig
from mirrorfleet.tree.changes import Written, changes_path
from mirrorfleet.tree.files import atomic_write

MISSING_ARGS = 23  # rsync's "partial transfer": a listed file is not there upstream


class Mismatch(SyncError):
    """Upstream does not hold what its records say (it moved on, or it lies)."""


def is_content(path: str, content_paths: tuple[str, ...]) -> bool:
    return any(path == top or path.startswith(top + "/") for top in map(_top, content_paths))


def _top(path: str) -> str:
    return path.strip("/")


def apply_delta(config: AgentConfig, feed: Feed) -> int:
    """Steps 1 to 4; bytes received. Mismatch before anything served changed."""
    delta, tree = feed.delta, config.tree
    content = sorted(p for p in delta.written if is_content(p, config.content_paths))
    pages = sorted(p for p in delta.written if not is_content(p, config.content_paths))
    received = 0
    if content:
        received += _fetch(config, "changed content", content, delta.written)
        _check(tree, (delta.written[p] for p in content))
    if pages:
        received += _fetch(config, "changed pages", pages, delta.written)
        _check(tree / STAGING_DIR, (delta.written[p] for p in pages))
    for serial, fetched in sorted(feed.raw.items()):
        staged = tree / STAGING_DIR / changes_path(serial)
        atomic_write(staged, fetched.body, tree)
        if fetched.modified is not None:  # else the audit's walk copies it once more
            os.utime(staged, (fetched.modified, fetched.modified))
    move_staged(tree)
    remove(tree, delta.removed)
    prune_records(tree, delta.since, delta.until, feed.keep)
    return received


def _fetch(config: AgentConfig, stage: str, paths: list[str], written: dict[str, Written]) -> int:
    """Copy the listed paths, none bigger than the largest size the records give them
    (nor than max_file_size): a hostile upstream cannot send a bigger file in their
    place. rsync skips a bigger one, and that is a Mismatch like any wrong size."""
    write_list(config, stage, paths)
    largest = min(max(written[p].size for p in paths), config.max_file_size)
    try:
        return run_rsync(config, stage, largest)[0]
    except TooLarge as exc:
        raise Mismatch(f"upstream does not hold what its records say: {exc}") from None
    except RsyncFailed as exc:
        if exc.code == MISSING_ARGS:
            raise Mismatch(f"upstream lacks a file its records name ({exc})") from None
        raise


def _check(root: Path, expected: Iterable[Written]) -> None:
    for item in expected:
        path = root / item.path
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise Mismatch(f"{item.path} did not arrive") from None
        if size != item.size:
            raise Mismatch(f"{item.path}: {size} bytes, its record says {item.size}")
        if item.sha256 and hashlib.sha256(path.read_bytes()).hexdigest() != item.sha256:
            raise Mismatch(f"{item.path} does not match the sha256 its record gives")


def remove(tree: Path, paths: set[str]) -> None:
    """Each removed file, then every folder that leaves empty, up to (not including)
    the top-level folder it lives in."""
    for rel in sorted(paths):
        path = tree / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        parent = path.parent
        while parent.parent != tree and parent != tree:
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone with a sibling)
                if parent.exists():
                    break
            parent = parent.parent


def prune_records(tree: Path, since: int, until: int, keep: int) -> None:
    """Drop the records the upstream no longer keeps, as it did: one per serial."""
    for serial in range(max(1, since - keep + 1), until - keep + 1):
        (tree / changes_path(serial)).unlink(missing_ok=True)
