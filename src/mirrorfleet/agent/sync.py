"""One sync of a mirror's tree from its upstream, never exposing a torn state.

1. Fetch the upstream stamp over HTTP and verify its signature; stop if the serial
   is the one we serve (no rsync at all). An expired stamp is reported, not refused
   (the agent's own clock is trusted for nothing). A heartbeat (the same serial
   and metadata, signed again) is put in place as it is: that is all a heartbeat
   costs a mirror.
2. Fetch the snapshot the stamp names (every manifest shard by hash).
3. Catch up: by the change records when they can say what changed (delta.py: cost
   follows the change), else by walking the whole tree (full.py: cost follows the
   tree). The records must chain to the stamp's record, and every shard must be the
   one the snapshot names, so nothing from another serial is ever stamped as this
   one. A delta that finds upstream moved on under it tries again from the new
   stamp, a few times, then walks.
4. Put the snapshot, then the verified stamp, in place last: the stamp served is
   never newer than the content served.
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

from mirrorfleet.agent.delta import Mismatch, apply_delta
from mirrorfleet.agent.feed import NoFeed, read_feed
from mirrorfleet.agent.full import full_sync
from mirrorfleet.agent.rsync import SyncError, clear_leftovers
from mirrorfleet.config import AgentConfig
from mirrorfleet.notify.ping import send_ping
from mirrorfleet.probe.fetch import SpotCheckFailed, Unreachable, fetch_file
from mirrorfleet.tree.files import META_DIR, atomic_write
from mirrorfleet.tree.keys import read_secret
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.snapshot import (
    MAX_SNAPSHOT,
    SNAPSHOT_PATH,
    MixedSnapshot,
    Snapshot,
    mismatched_shards,
    parse_snapshot,
)
from mirrorfleet.tree.stamp import (
    STAMP_PATH,
    Stamp,
    StampUnavailable,
    fetch_stamp,
    read_local_stamp,
)
from mirrorfleet.tree.trust import KEYS_PATH, Keyring, KeysUnavailable

log = logging.getLogger("mirrorfleet.agent")

DELTA_ATTEMPTS = 3  # upstream publishing faster than a delta lands: then walk


class NotPublished(SyncError):
    """Upstream has no stamp yet: a new fleet before its first publish."""


@dataclass(frozen=True)
class Upstream:
    """Upstream's verified stamp and the snapshot it names, with their bytes."""

    stamp: Stamp
    raw: bytes
    snapshot: Snapshot
    snapshot_raw: bytes


@dataclass
class SyncResult:
    status: str  # "unchanged" | "renewed" (a heartbeat) | "synced" | "waiting" | "error" | "busy"
    serial: int | None = None
    previous: int | None = None
    bytes: int = 0
    seconds: float = 0.0
    error: str = ""
    finished: float = 0.0
    mode: str = ""  # "delta" (by the change records) | "full" (a walk of the tree)
    why_full: str = ""  # why the records could not be used
    stale: str = ""  # upstream's stamp expired, on this host's clock: why, for the operator

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


def fetch_upstream_stamp(config: AgentConfig, keys: Keyring) -> tuple[Stamp, bytes]:
    """Upstream's verified stamp. A signer we do not trust yet may be certified by a
    newer keys document (a rotation), and a stamp naming a newer document means a
    revocation may be in it: either way upstream's document is fetched first."""
    try:
        stamp, raw = fetch_stamp(config.upstream_http, keys)
    except StampUnavailable as exc:
        if exc.missing or not exc.rejected or not refresh_keys(config, keys):
            raise (NotPublished if exc.missing else SyncError)(f"upstream {exc}") from None
        return fetch_upstream_stamp(config, keys)  # with the newer document, once
    if stamp.keys > keys.version:
        try:
            refresh_keys(config, keys)
        except SyncError as exc:
            if not keys.signed_by_anchor(raw):
                raise
            log.warning("%s: not needed, the stamp's signer is pinned itself", exc)
            return stamp, raw
        if stamp.keys > keys.version and not keys.signed_by_anchor(raw):
            raise SyncError(
                f"upstream's stamp names keys document version {stamp.keys}, "
                f"and it serves version {keys.version}"
            )
        stamp, raw = fetch_upstream_stamp(config, keys)  # its signer may now be revoked
    return stamp, raw


def refresh_keys(config: AgentConfig, keys: Keyring) -> bool:
    """Adopt upstream's keys document when newer; False when there is none newer."""
    try:
        return keys.refresh(config.upstream_http, config.rsync_timeout)
    except (KeysUnavailable, BadSignature) as exc:
        raise SyncError(f"upstream keys document: {exc}") from None


def keep_keys(config: AgentConfig, keys: Keyring, held: int) -> None:
    """Serve the keys document we adopted, before the stamp that needs it."""
    if keys.raw is not None and keys.version > held:
        atomic_write(config.tree / KEYS_PATH, keys.raw, config.tree)


def fetch_upstream(config: AgentConfig, keys: Keyring, stamp: Stamp, raw: bytes) -> Upstream:
    """The snapshot `stamp` names. Upstream writes it before its stamp, so one that is
    newer means upstream published since: then its newer stamp, a few times."""
    for _attempt in range(DELTA_ATTEMPTS):
        url = f"{config.upstream_http.rstrip('/')}/{SNAPSHOT_PATH}"
        try:
            fetched = fetch_file(url, timeout=config.rsync_timeout, limit=MAX_SNAPSHOT)
        except (Unreachable, SpotCheckFailed) as exc:
            raise SyncError(f"upstream snapshot: {exc}") from None
        if fetched is None:
            raise SyncError(f"upstream has no snapshot at {url}")
        try:
            snapshot = parse_snapshot(fetched.body, keys, stamp.snapshot)
            return Upstream(stamp, raw, snapshot, fetched.body)
        except MixedSnapshot:
            stamp, raw = fetch_upstream_stamp(config, keys)  # moved on: read again
        except BadSignature as exc:
            raise SyncError(f"upstream snapshot rejected: {exc}") from None
    raise SyncError(f"upstream's snapshot never matched its stamp ({DELTA_ATTEMPTS} reads)")


def renew(config: AgentConfig, local: Stamp, upstream: Stamp, raw: bytes) -> bool:
    """Put a heartbeat of the serial we serve in place; False when `upstream` is not
    one (its metadata differs: then the caller syncs)."""
    if (upstream.snapshot, upstream.record) != (local.snapshot, local.record):
        return False
    if upstream.ts > local.ts:
        atomic_write(config.tree / STAMP_PATH, raw, config.tree)
    return True


def sync_once(config: AgentConfig, full: bool = False) -> SyncResult:
    """full: walk the whole tree even at the head serial (the audit: it repairs what
    was damaged behind the agent's back)."""
    started = time.monotonic()
    keys = Keyring.pinned(config.public_keys, config.root_threshold)
    problem = keys.load(config.tree / KEYS_PATH)
    if problem:
        log.warning("the keys document we serve is refused (%s): upstream's decides", problem)
    held = keys.version
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
        # The agent's clock decides nothing: an expired stamp is still the newest
        # state upstream vouched for, and a mirror whose clock is wrong must keep
        # syncing. Clients and the monitor judge expiry on their own clocks; the
        # agent says it, so the operator sees a stopped heartbeat here too.
        result.stale = upstream.expiry_problem() or ""
        if result.stale:
            log.warning("upstream %s", result.stale)
        if local and upstream.serial == local.serial and not full:
            keep_keys(config, keys, held)
            if renew(config, local, upstream, raw):
                result.status = "renewed" if upstream.ts > local.ts else "unchanged"
                if result.status == "renewed":
                    notify(config, result)
                return result
            log.warning("upstream's serial %d names other metadata: syncing it", upstream.serial)
            full = True
        if local and upstream.serial < local.serial:
            raise SyncError(
                f"upstream serial {upstream.serial} is older than ours ({local.serial}); "
                "refusing to go back"
            )
        config.tree.mkdir(parents=True, exist_ok=True)
        log.info("syncing serial %s -> %d", result.previous, upstream.serial)
        caught = catch_up(
            config, keys, local, fetch_upstream(config, keys, upstream, raw), result, full
        )
        keep_keys(config, keys, held)
        atomic_write(config.tree / SNAPSHOT_PATH, caught.snapshot_raw, config.tree)
        atomic_write(config.tree / STAMP_PATH, caught.raw, config.tree)
        result.status, result.serial = "synced", caught.stamp.serial
        result.seconds = time.monotonic() - started
        write_trace(config, caught.stamp, result)
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
    keys: Keyring,
    local: Stamp | None,
    upstream: Upstream,
    result: SyncResult,
    full: bool,
) -> Upstream:
    """Step 3 of the module docstring; the stamp and snapshot the tree now holds."""
    result.why_full = "asked for" if full else "no local stamp" if local is None else ""
    for _attempt in range(DELTA_ATTEMPTS if not result.why_full else 0):
        assert local is not None
        try:
            feed = read_feed(config, keys, local.serial, upstream.stamp, upstream.snapshot)
        except NoFeed as exc:
            result.why_full = str(exc)
            break
        try:
            result.bytes = apply_delta(config, feed)
            result.mode = "delta"
            return upstream
        except Mismatch as exc:
            clear_leftovers(config.tree)  # the staged pages; the content added stays
            newer = _newer(config, keys, upstream)
            if newer is None:  # not moving: it does not hold what it signed
                result.why_full = f"serial {upstream.stamp.serial}: {exc}"
                log.warning("upstream %s", result.why_full)
                break
            log.info("upstream moved on to %d during the delta (%s)", newer.stamp.serial, exc)
            upstream = newer
    else:
        result.why_full = result.why_full or f"upstream kept moving ({DELTA_ATTEMPTS} deltas)"
    log.info("full sync: %s", result.why_full)
    result.mode = "full"
    for _attempt in range(DELTA_ATTEMPTS):
        result.bytes += full_sync(config)
        # the walk may have copied shards of a serial published while it ran
        wrong = mismatched_shards(config.tree, upstream.snapshot)
        if not wrong:
            return upstream
        newer = _newer(config, keys, upstream)
        if newer is not None and not mismatched_shards(config.tree, newer.snapshot):
            return newer
        upstream = newer or upstream
        log.info("shards %s are not serial %d's: walking again", wrong[:5], upstream.stamp.serial)
    raise Mismatch(
        f"after {DELTA_ATTEMPTS} walks the shards are not the ones serial "
        f"{upstream.stamp.serial}'s snapshot names"
    )


def _newer(config: AgentConfig, keys: Keyring, upstream: Upstream) -> Upstream | None:
    """Upstream's stamp now, when it has moved past `upstream`; None when it has not."""
    stamp, raw = fetch_upstream_stamp(config, keys)
    if stamp.serial <= upstream.stamp.serial:
        return None
    return fetch_upstream(config, keys, stamp, raw)


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
