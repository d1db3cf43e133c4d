"""One sync of a mirror's tree from its upstream, never exposing a torn state.

1. Fetch the upstream stamp over HTTP and verify its signature; stop if the serial
   is the one we serve (no rsync at all).
2. Catch up: by the change records when they can say what changed (delta.py: cost
   follows the change), else by walking the whole tree (full.py: cost follows the
   tree). A delta that finds upstream moved on under it tries again from the new
   stamp, a few times, then walks.
3. Put the verified stamp in place last: the stamp served is never newer than the
   content served.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet.agent.delta import Mismatch, apply_delta
from mirrorfleet.agent.feed import NoFeed, read_feed
from mirrorfleet.agent.full import full_sync
from mirrorfleet.agent.rsync import SyncError, clear_leftovers
from mirrorfleet.config import AgentConfig
from mirrorfleet.notify.ping import send_ping
from mirrorfleet.tree.files import META_DIR, atomic_write
from mirrorfleet.tree.keys import parse_public_key, read_secret
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.stamp import (
    STAMP_PATH,
    Stamp,
    StampUnavailable,
    fetch_stamp,
    read_local_stamp,
)

log = logging.getLogger("mirrorfleet.agent")

DELTA_ATTEMPTS = 3  # upstream publishing faster than a delta lands: then walk


class NotPublished(SyncError):
    """Upstream has no stamp yet: a new fleet before its first publish."""


@dataclass
class SyncResult:
    status: str  # "unchanged" | "synced" | "waiting" | "error" | "busy"
    serial: int | None = None
    previous: int | None = None
    bytes: int = 0
    seconds: float = 0.0
    error: str = ""
    finished: float = 0.0
    mode: str = ""  # "delta" (by the change records) | "full" (a walk of the tree)
    why_full: str = ""  # why the records could not be used

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@contextmanager
def sync_lock(state_dir: Path, wait: bool) -> Iterator[bool]:
    """One sync at a time, whether started by the daemon or the fallback timer."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "sync.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch_upstream_stamp(config: AgentConfig, keys: list[Ed25519PublicKey]) -> tuple[Stamp, bytes]:
    try:
        return fetch_stamp(config.upstream_http, keys)
    except StampUnavailable as exc:
        raise (NotPublished if exc.missing else SyncError)(f"upstream {exc}") from None


def sync_once(config: AgentConfig, full: bool = False) -> SyncResult:
    """full: walk the whole tree even at the head serial (the audit: it repairs what
    was damaged behind the agent's back)."""
    started = time.monotonic()
    keys = [parse_public_key(k) for k in config.public_keys]
    result = SyncResult(status="error")
    try:
        clear_leftovers(config.tree)
        try:
            local = read_local_stamp(config.tree, keys)
        except BadSignature as exc:
            log.warning("local stamp does not verify (%s): resyncing", exc)
            local = None
        result.previous = result.serial = local.serial if local else None
        try:
            upstream, raw = fetch_upstream_stamp(config, keys)
        except NotPublished as exc:
            if local:  # upstream lost what it had published: that is an error
                raise
            result.status = "waiting"
            log.info("%s: nothing to sync yet", exc)
            return result
        if local and upstream.serial == local.serial and not full:
            result.status = "unchanged"
            return result
        if local and upstream.serial < local.serial:
            raise SyncError(
                f"upstream serial {upstream.serial} is older than ours ({local.serial}); "
                "refusing to go back"
            )
        config.tree.mkdir(parents=True, exist_ok=True)
        log.info("syncing serial %s -> %d", result.previous, upstream.serial)
        upstream, raw = catch_up(config, keys, local, upstream, raw, result, full)
        atomic_write(config.tree / STAMP_PATH, raw, config.tree)
        result.status, result.serial = "synced", upstream.serial
        result.seconds = time.monotonic() - started
        write_trace(config, upstream, result)
        notify(config, result)
        return result
    except SyncError as exc:
        result.error = str(exc)
        log.error("sync failed: %s", exc)
        return result
    except OSError as exc:  # e.g. a full disk while writing the stamp
        result.error = f"{exc.strerror or exc}: {exc.filename or ''}".strip(": ")
        log.error("sync failed: %s", result.error)
        return result
    finally:
        result.seconds = time.monotonic() - started
        result.finished = time.time()


def catch_up(
    config: AgentConfig,
    keys: list[Ed25519PublicKey],
    local: Stamp | None,
    upstream: Stamp,
    raw: bytes,
    result: SyncResult,
    full: bool,
) -> tuple[Stamp, bytes]:
    """Step 2 of the module docstring; the stamp (and its bytes) the tree now holds."""
    result.why_full = "asked for" if full else "no local stamp" if local is None else ""
    for _attempt in range(DELTA_ATTEMPTS if not result.why_full else 0):
        assert local is not None
        try:
            feed = read_feed(config, keys, local.serial, upstream.serial)
        except NoFeed as exc:
            result.why_full = str(exc)
            break
        try:
            result.bytes = apply_delta(config, feed)
            result.mode = "delta"
            return upstream, raw
        except Mismatch as exc:
            clear_leftovers(config.tree)  # the staged pages; the content added stays
            newer, newer_raw = fetch_upstream_stamp(config, keys)
            if newer.serial == upstream.serial:  # not moving: it does not hold what it signed
                result.why_full = f"serial {upstream.serial}: {exc}"
                log.warning("upstream %s", result.why_full)
                break
            log.info("upstream moved on to %d during the delta (%s)", newer.serial, exc)
            upstream, raw = newer, newer_raw
    else:
        result.why_full = result.why_full or f"upstream kept moving ({DELTA_ATTEMPTS} deltas)"
    log.info("full sync: %s", result.why_full)
    result.bytes = full_sync(config)
    result.mode = "full"
    return upstream, raw


def write_trace(config: AgentConfig, upstream: Stamp, result: SyncResult) -> None:
    trace = {
        "name": config.name,
        "serial": upstream.serial,
        "ts": int(time.time()),
        "upstream": config.upstream_http,
        "bytes": result.bytes,
        "seconds": round(result.seconds, 3),
    }
    data = json.dumps(trace, sort_keys=True, indent=1).encode() + b"\n"
    atomic_write(config.tree / META_DIR / "trace" / config.name, data, config.tree)


def notify(config: AgentConfig, result: SyncResult) -> None:
    if not config.notify:
        return
    secret = read_secret(config.ping_secret)
    payload = {"event": "synced", "serial": result.serial, "from": config.name}
    for url in config.notify:
        status = send_ping(url, secret, payload)
        if status != 202:
            log.warning("notify %s: status %s", url, status or "unreachable")
