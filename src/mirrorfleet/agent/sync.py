"""One sync of a mirror's tree from its upstream, never exposing a torn state.

1. Fetch the upstream stamp over HTTP and verify its signature; stop if the serial
   is the one we serve (no rsync file-list walk at all).
2. Scan: a dry run lists what upstream no longer has. It ends before anything else
   is read, and upstream rewrites an index before it drops a file the index named,
   so no index fetched later can name what the scan lists.
3. Pages: a dry run lists everything but content (index pages, .mirror/) that
   differs from what we serve, and exactly those files are fetched into a staging
   folder inside the tree. Nothing served changes yet.
4. Content: the content paths, adds only. This walk starts after the pages were
   read, so every file they link is on disk before any of them is served.
5. Move the staged pages into place, deepest first (a page's index lives above it),
   then delete what the scan listed. Neither step depends on rsync's sort order,
   which puts Debian's `dists` before its `pool`.
6. Put the verified stamp in place last: the stamp served is never newer than the
   content served.

A sync killed at any point leaves a tree whose every index names files that exist;
the next sync clears the staging folder and finishes the job.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet.config import AgentConfig
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.notify.ping import send_ping
from mirrorfleet.tree.files import META_DIR, TMP_SUFFIX, atomic_write, make_parents
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

RETRYABLE_RSYNC = {5, 10, 12, 30, 35}  # daemon refused, socket I/O, protocol stream, timeouts
VANISHED = 24  # upstream changed while we read it: fine, the next sync catches up
PARTIAL_DIR = ".rsync-partial"
STAGING_DIR = ".mirrorfleet-next"  # pages fetched ahead of their content, served by nothing
STAGES = {"scan": 1, "list": 2, "pages": 3, "content": 4}
ITEM = 12  # --itemize-changes: 11 columns and a space, then the name
DELETING = b"*deleting "
PAGES_LIST = "pages.list"  # in state_dir: what the list stage found changed


class SyncError(MirrorfleetError):
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


def rsync_argv(config: AgentConfig, stage: str) -> list[str]:
    """The rsync command line of one stage (see the module docstring)."""
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
        f"--exclude=/{STAGING_DIR}/",  # an upstream mirror's own staging, or ours
    ]
    if config.bwlimit_kbps:
        argv.append(f"--bwlimit={config.bwlimit_kbps}")
    dest = config.tree
    if stage == "content":
        for path in config.content_paths:
            argv.append(f"--include=/{path.strip('/')}/***")
        argv.append("--exclude=*")
    else:
        argv += [f"--exclude=/{STAMP_PATH}", f"--exclude=/{META_DIR}/trace/{config.name}"]
        if stage == "scan":
            argv += ["--dry-run", "--delete", "--existing", "--ignore-existing", "-i"]
        else:
            argv += [f"--exclude=/{path.strip('/')}/" for path in config.content_paths]
        if stage == "list":
            argv += ["--dry-run", "-i"]
        elif stage == "pages":  # exactly the listed files, into the staging folder
            listed = config.state_dir / PAGES_LIST
            argv += [f"--files-from={listed}", "--from0", "--ignore-missing-args"]
            dest = config.tree / STAGING_DIR
    return [*argv, f"{config.upstream_rsync.rstrip('/')}/", f"{dest}/"]


def run_rsync(config: AgentConfig, stage: str) -> tuple[int, bytes]:
    """Run one stage with retries and backoff; bytes received, and rsync's output
    (bytes: file names are whatever bytes upstream uses)."""
    argv = rsync_argv(config, stage)
    for attempt in range(config.retries + 1):
        proc = subprocess.run(argv, capture_output=True)
        if proc.returncode in (0, VANISHED):
            match = re.search(rb"Total bytes received: ([\d,.]+)", proc.stdout)
            received = int(re.sub(rb"[,.]", b"", match.group(1))) if match else 0
            return received, proc.stdout
        lines = proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        # the specific cause ("write failed ...: No space left on device") comes
        # before rsync's generic summary line
        detail = next((line for line in lines if line.startswith("rsync:")), lines[-1])
        label = f"rsync stage {STAGES[stage]} ({stage})"
        if proc.returncode not in RETRYABLE_RSYNC or attempt == config.retries:
            raise SyncError(f"{label} failed ({proc.returncode}): {detail}")
        delay = min(30, 2**attempt)
        log.warning("%s failed (%s), retry in %ds", label, detail, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")


def deletions(scan_output: bytes) -> list[str]:
    """Paths the scan found gone upstream, relative to the tree (folders end in /)."""
    return [unescape(line[ITEM:]) for line in scan_output.splitlines() if line.startswith(DELETING)]


def changed_files(list_output: bytes) -> list[str]:
    """Files and symlinks the list stage would transfer (`>f…`, `cL…`), not folders."""
    return [
        unescape(line[ITEM:])
        for line in list_output.splitlines()
        if len(line) > ITEM and line[:1] in b">c" and line[1:2] in b"fL"
    ]


def unescape(name: bytes) -> str:
    """rsync writes a byte it will not print (a newline, say) as \\#ooo, in octal."""
    return os.fsdecode(re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m[1], 8)]), name))


def move_staged(tree: Path) -> int:
    """Rename every staged file into the tree, deepest first; how many moved."""
    staging = tree / STAGING_DIR
    staged = sorted(
        (
            Path(root, name).relative_to(staging)
            for root, _dirs, files in os.walk(staging)
            for name in files
        ),
        key=lambda rel: (-len(rel.parts), rel.as_posix()),
    )
    for rel in staged:
        make_parents(tree / rel, tree)
        os.replace(staging / rel, tree / rel)
    shutil.rmtree(staging, ignore_errors=True)
    return len(staged)


def delete_gone(tree: Path, gone: list[str]) -> None:
    """Files first, then folders deepest first; a folder that gained files stays."""
    for rel in (g for g in gone if not g.endswith("/")):
        path = tree / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
    folders = sorted((g.rstrip("/") for g in gone if g.endswith("/")), key=len, reverse=True)
    for rel in folders:
        try:
            (tree / rel).rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # not empty: upstream brought it back with new files
            log.info("kept %s: it is not empty", rel)


def clear_leftovers(tree: Path) -> None:
    """What a killed sync left: its staging folder and half-written stamp or trace
    (served by nothing, but they would pile up)."""
    shutil.rmtree(tree / STAGING_DIR, ignore_errors=True)
    for folder in (tree / META_DIR, tree / META_DIR / "trace"):
        for leftover in folder.glob(f".*{TMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)


def transfer(config: AgentConfig) -> int:
    """Steps 2 to 5 of the module docstring; bytes received."""
    started = time.monotonic()
    gone = deletions(run_rsync(config, "scan")[1])
    pages = changed_files(run_rsync(config, "list")[1])
    received = 0
    if pages:
        config.state_dir.mkdir(parents=True, exist_ok=True)
        listed = b"".join(os.fsencode(page) + b"\0" for page in pages)
        (config.state_dir / PAGES_LIST).write_bytes(listed)
        received += run_rsync(config, "pages")[0]
    fetched = time.monotonic()
    received += run_rsync(config, "content")[0]
    walked = time.monotonic()
    moved = move_staged(config.tree)
    delete_gone(config.tree, gone)
    log.info(
        "%d pages staged in %.1fs, content walked in %.1fs, %d moved in and %d deleted in %.1fs",
        len(pages),
        fetched - started,
        walked - fetched,
        moved,
        len(gone),
        time.monotonic() - walked,
    )
    return received


def sync_once(config: AgentConfig) -> SyncResult:
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
        result.bytes = transfer(config)
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
