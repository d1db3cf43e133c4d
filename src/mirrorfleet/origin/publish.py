"""`mirrorfleet origin publish`: turn whatever landed in the tree into a new serial.

Order matters: shards and journal first, the stamp last, each file atomic. A
mirror that copies the tree mid-publish gets an older stamp, never a stamp ahead of
the content it describes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mirrorfleet.config import OriginConfig
from mirrorfleet.errors import UserError
from mirrorfleet.notify.ping import send_ping
from mirrorfleet.tree import manifest
from mirrorfleet.tree.changes import ChangeRecord, changes_path
from mirrorfleet.tree.files import META_DIR, atomic_write
from mirrorfleet.tree.keys import load_signing_key, read_secret
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp, read_local_stamp


@dataclass
class PublishResult:
    serial: int
    previous: int
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    pings: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def published(self) -> bool:
        return self.serial != self.previous


def project_pages(tree: Path, preset: str) -> dict[str, Path]:
    """Project name -> index page; refuses a page that resolves outside the tree (a
    symlink out of it), which would sign a file the mirrors never get (--safe-links)."""
    if preset != "pypi":
        return {}  # other presets get a stamp and journal, no per-project manifest yet
    from mirrorfleet.content.pypi import project_index_pages

    pages = project_index_pages(tree)
    root = tree.resolve()
    for page in pages.values():
        real = page.resolve()
        if not real.is_relative_to(root):
            raise UserError(
                f"refusing to publish: {page.relative_to(tree)} resolves to {real}, "
                f"outside the tree {root}; replace the symlink with the file"
            )
    return pages


def publish(
    config: OriginConfig,
    force: bool = False,
    ping: bool = True,
    progress: Callable[[str], None] = lambda _msg: None,
) -> PublishResult:
    started = time.monotonic()
    tree = config.tree
    if not tree.is_dir():
        raise UserError(f"tree {tree} does not exist")
    key = load_signing_key(config.signing_key)
    keys = [key.public_key()]
    try:
        current = read_local_stamp(tree, keys)
        old = manifest.load_manifest(tree, keys)
        journal = manifest.load_journal(tree, keys)
    except BadSignature as exc:
        raise UserError(
            f"the tree's own .mirror/ does not verify with this signing key ({exc}); "
            "was the key rotated? move .mirror/ aside to start a new history"
        ) from None
    previous = current.serial if current else 0
    progress(f"hashing project index pages in {tree}")
    hashes = manifest.hash_pages(project_pages(tree, config.preset).items())
    update = manifest.diff(old, hashes, previous + 1)
    result = PublishResult(serial=previous, previous=previous)
    if update.empty and current is not None and not force:
        result.seconds = time.monotonic() - started
        return result
    progress(
        f"serial {update.serial}: {len(update.changed)} changed, {len(update.removed)} removed"
    )
    manifest.apply_update(tree, old, hashes, update, key)
    manifest.append_journal(tree, journal, update, key)
    record = ChangeRecord(
        serial=update.serial, changed=[*update.changed, *update.removed], complete=False
    )
    atomic_write(tree / changes_path(update.serial), record.sign(key), tree)
    stamp = Stamp.new(update.serial, config.name)
    trace = {"name": config.name, "serial": stamp.serial, "ts": stamp.ts, "upstream": None}
    atomic_write(tree / META_DIR / "trace" / config.name, _json(trace), tree)
    atomic_write(tree / STAMP_PATH, stamp.sign(key), tree)
    result.serial, result.changed, result.removed = update.serial, update.changed, update.removed
    if ping and config.ping:
        result.pings = ping_all(config, stamp.serial)
    result.seconds = time.monotonic() - started
    return result


def ping_all(config: OriginConfig, serial: int) -> dict[str, int]:
    secret = read_secret(config.ping_secret)
    payload = {"event": "publish", "serial": serial, "from": config.name}
    with ThreadPoolExecutor(max_workers=min(16, len(config.ping))) as pool:
        statuses = pool.map(lambda url: send_ping(url, secret, payload), config.ping)
        return dict(zip(config.ping, statuses, strict=True))


def _json(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, indent=1).encode() + b"\n"


def result_dict(result: PublishResult) -> dict[str, object]:
    return {**asdict(result), "published": result.published}
