"""One sync of a mirror's tree from its upstream, never exposing a torn state.

1. Fetch the upstream stamp over HTTP and verify its signature; stop if the serial
   is the one we serve (no rsync file-list walk at all).
2. rsync the content paths, adding files only.
3. rsync everything else (index pages, .mirror/), with updates renamed into place
   at the end and deletes after that, so no index ever names a missing file.
4. Put the verified stamp in place last: the stamp served is never newer than the
   content served.
"""

from __future__ import annotations

import fcntl
import json
import logging
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet.config import AgentConfig
from mirrorfleet.keys import parse_public_key, read_secret
from mirrorfleet.ping import send_ping
from mirrorfleet.signed import BadSignature
from mirrorfleet.stamp import (
    STAMP_PATH,
    Stamp,
    StampUnavailable,
    fetch_stamp,
    read_local_stamp,
)
from mirrorfleet.treefiles import META_DIR, TMP_SUFFIX, atomic_write

log = logging.getLogger("mirrorfleet.agent")

RETRYABLE_RSYNC = {5, 10, 12, 30, 35}  # daemon refused, socket I/O, protocol stream, timeouts
VANISHED = 24  # upstream changed while we read it: fine, the next sync catches up
PARTIAL_DIR = ".rsync-partial"


class SyncError(Exception):
    pass


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


def rsync_argv(config: AgentConfig, stage: int) -> list[str]:
    argv = [
        "rsync",
        "-rltp",
        "--chmod=D755,F644",
        "--safe-links",  # a symlink pointing out of the tree is never copied
        "--no-motd",
        "--stats",
        f"--timeout={config.rsync_timeout}",
        f"--partial-dir={PARTIAL_DIR}",
        f"--exclude=.*{TMP_SUFFIX}",  # files upstream is still writing
    ]
    if config.bwlimit_kbps:
        argv.append(f"--bwlimit={config.bwlimit_kbps}")
    if stage == 1:
        for path in config.content_paths:
            argv.append(f"--include=/{path.strip('/')}/***")
        argv.append("--exclude=*")
    else:
        argv += [
            "--delete",
            "--delete-delay",
            "--delay-updates",
            f"--exclude=/{STAMP_PATH}",
            f"--exclude=/{META_DIR}/trace/{config.name}",  # ours: excluded, so kept
        ]
    return [*argv, f"{config.upstream_rsync.rstrip('/')}/", f"{config.tree}/"]


def run_rsync(config: AgentConfig, stage: int) -> int:
    """Run one stage with retries and backoff; return bytes received."""
    argv = rsync_argv(config, stage)
    for attempt in range(config.retries + 1):
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode in (0, VANISHED):
            match = re.search(r"Total bytes received: ([\d,.]+)", proc.stdout)
            return int(re.sub(r"[,.]", "", match.group(1))) if match else 0
        lines = proc.stderr.strip().splitlines() or ["no output"]
        # the specific cause ("write failed ...: No space left on device") comes
        # before rsync's generic summary line
        detail = next((line for line in lines if line.startswith("rsync:")), lines[-1])
        if proc.returncode not in RETRYABLE_RSYNC or attempt == config.retries:
            raise SyncError(f"rsync stage {stage} failed ({proc.returncode}): {detail}")
        delay = min(30, 2**attempt)
        log.warning("rsync stage %d failed (%s), retry in %ds", stage, detail, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")


def sync_once(config: AgentConfig) -> SyncResult:
    started = time.monotonic()
    keys = [parse_public_key(k) for k in config.public_keys]
    result = SyncResult(status="error")
    try:
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
        if local and upstream.serial == local.serial:
            result.status = "unchanged"
            return result
        if local and upstream.serial < local.serial:
            raise SyncError(
                f"upstream serial {upstream.serial} is older than ours ({local.serial}); "
                "refusing to go back"
            )
        config.tree.mkdir(parents=True, exist_ok=True)
        log.info("syncing serial %s -> %d", result.previous, upstream.serial)
        result.bytes = run_rsync(config, 1)
        result.bytes += run_rsync(config, 2)
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
