"""Running rsync for the agent: one command line per stage, retries, the staging folder.

Every stage pulls from the same module with the same safety options; they differ
in what they read (the whole tree, the content paths, or an exact file list) and
where they write (the tree, or the staging folder nothing serves).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from mirrorfleet.config import AgentConfig
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.tree.changes import SYNC_WRITES
from mirrorfleet.tree.files import META_DIR, TMP_SUFFIX, make_parents

log = logging.getLogger("mirrorfleet.agent")

RETRYABLE_RSYNC = {5, 10, 12, 30, 35}  # daemon refused, socket I/O, protocol stream, timeouts
VANISHED = 24  # upstream changed while we read it: fine, the next sync catches up
PARTIAL_DIR = ".rsync-partial"
STAGING_DIR = ".mirrorfleet-next"  # pages fetched ahead of their content, served by nothing
# The stages, numbered for error messages: 1-4 the full sync's, 5-6 the incremental's.
STAGES = {
    "scan": 1,
    "list": 2,
    "pages": 3,
    "content": 4,
    "changed content": 5,
    "changed pages": 6,
}
# The file lists (in state_dir) the --files-from stages read.
LISTS = {
    "pages": "pages.list",
    "changed content": "changed-content.list",
    "changed pages": "changed-pages.list",
}
ITEM = 12  # --itemize-changes: 11 columns and a space, then the name
# The stages that copy files: each takes at most --max-size bytes per file. rsync
# skips a bigger file, says so (with --info=skip1) and exits 0; run_rsync refuses it.
TRANSFERS = ("pages", "content", "changed content", "changed pages")
OVER_MAX_SIZE = b" is over max-size"


class SyncError(MirrorfleetError):
    pass


class TooLarge(SyncError):
    """Upstream has a file bigger than this stage takes: not copied, nothing served changed."""

    def __init__(self, message: str, paths: list[str]) -> None:
        super().__init__(message)
        self.paths = paths


class RsyncFailed(SyncError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def rsync_argv(config: AgentConfig, stage: str, max_size: int | None = None) -> list[str]:
    """The rsync command line of one stage (see full.py and delta.py). max_size: the
    largest file a copying stage takes; config.max_file_size when not given."""
    argv = [
        "rsync",
        # -r only to walk: with --files-from it makes rsync look at every listed
        # file's folders as well, three times the cost of the list alone
        "-ltp" if stage in LISTS else "-rltp",
        "--chmod=D755,F644",
        "--safe-links",  # a symlink pointing out of the tree is never copied
        "--no-motd",
        # the quick check to the nanosecond: at one second, a page or shard rewritten
        # at the same size within the second of our copy looks unchanged to a walk
        "--modify-window=-1",
        "--stats",
        f"--timeout={config.rsync_timeout}",
        f"--partial-dir={PARTIAL_DIR}",
        f"--exclude=.*{TMP_SUFFIX}",  # files upstream is still writing
        f"--exclude=/{STAGING_DIR}/",  # an upstream mirror's own staging, or ours
    ]
    if config.bwlimit_kbps:
        argv.append(f"--bwlimit={config.bwlimit_kbps}")
    if stage in TRANSFERS:  # a file of exactly max_size bytes is copied
        limit = config.max_file_size if max_size is None else max_size
        argv += [f"--max-size={limit}", "--info=skip1"]
    dest = config.tree
    if stage in LISTS:  # exactly the listed files; a missing one is an error
        argv += [f"--files-from={config.state_dir / LISTS[stage]}", "--from0"]
    if stage in ("pages", "changed pages"):
        dest = config.tree / STAGING_DIR
    if stage == "content":
        for path in config.content_paths:
            argv.append(f"--include=/{path.strip('/')}/***")
        argv.append("--exclude=*")
    elif stage in ("scan", "list", "pages"):
        # the stamp, the snapshot and the keys document: written by the sync itself
        argv += [f"--exclude=/{path}" for path in SYNC_WRITES]
        argv.append(f"--exclude=/{META_DIR}/trace/{config.name}")
        if stage == "scan":
            argv += ["--dry-run", "--delete", "--existing", "--ignore-existing", "-i"]
        else:
            argv += [f"--exclude=/{path.strip('/')}/" for path in config.content_paths]
        if stage == "list":
            argv += ["--dry-run", "-i"]
        elif stage == "pages":  # listed by the list stage: gone since is fine
            argv.append("--ignore-missing-args")
    return [*argv, f"{config.upstream_rsync.rstrip('/')}/", f"{dest}/"]


def write_list(config: AgentConfig, stage: str, paths: list[str]) -> None:
    """The NUL-separated list a --files-from stage reads (names may hold newlines)."""
    config.state_dir.mkdir(parents=True, exist_ok=True)
    data = b"".join(os.fsencode(path) + b"\0" for path in paths)
    (config.state_dir / LISTS[stage]).write_bytes(data)


def run_rsync(config: AgentConfig, stage: str, max_size: int | None = None) -> tuple[int, bytes]:
    """Run one stage with retries and backoff; bytes received, and rsync's output
    (bytes: file names are whatever bytes upstream uses). TooLarge when upstream has a
    file over the stage's max_size (see rsync_argv), which rsync skipped."""
    argv = rsync_argv(config, stage, max_size)
    for attempt in range(config.retries + 1):
        proc = subprocess.run(argv, capture_output=True)
        if proc.returncode in (0, VANISHED):
            over = over_max_size(proc.stdout)
            if over:
                limit = (
                    max_size if max_size is not None else f"max_file_size={config.max_file_size}"
                )
                shown = ", ".join(over[:3]) + (f" (+{len(over) - 3} more)" if len(over) > 3 else "")
                raise TooLarge(
                    f"rsync stage {STAGES[stage]} ({stage}): {len(over)} file(s) upstream "
                    f"larger than {limit} bytes, not copied: {shown}",
                    over,
                )
            match = re.search(rb"Total bytes received: ([\d,.]+)", proc.stdout)
            received = int(re.sub(rb"[,.]", b"", match.group(1))) if match else 0
            return received, proc.stdout
        lines = proc.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        # the specific cause ("write failed ...: No space left on device") comes
        # before rsync's generic summary line
        detail = next((line for line in lines if line.startswith("rsync:")), lines[-1])
        label = f"rsync stage {STAGES[stage]} ({stage})"
        if proc.returncode not in RETRYABLE_RSYNC or attempt == config.retries:
            raise RsyncFailed(f"{label} failed ({proc.returncode}): {detail}", proc.returncode)
        delay = min(30, 2**attempt)
        log.warning("%s failed (%s), retry in %ds", label, detail, delay)
        time.sleep(delay)
    raise AssertionError("unreachable")


def over_max_size(output: bytes) -> list[str]:
    """The files rsync skipped for --max-size, by its `NAME is over max-size` lines."""
    cut = len(OVER_MAX_SIZE)
    return [unescape(line[:-cut]) for line in output.splitlines() if line.endswith(OVER_MAX_SIZE)]


def unescape(name: bytes) -> str:
    """rsync writes a byte it will not print (a newline, say) as \\#ooo, in octal."""
    return os.fsdecode(re.sub(rb"\\#([0-7]{3})", lambda m: bytes([int(m[1], 8)]), name))


def move_staged(tree: Path) -> int:
    """Rename every staged file into the tree, deepest first (a page's index lives
    above it); how many moved."""
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


def clear_leftovers(tree: Path) -> None:
    """What a killed sync left: its staging folder and half-written stamp or trace
    (served by nothing, but they would pile up)."""
    shutil.rmtree(tree / STAGING_DIR, ignore_errors=True)
    for folder in (tree / META_DIR, tree / META_DIR / "trace"):
        for leftover in folder.glob(f".*{TMP_SUFFIX}"):
            leftover.unlink(missing_ok=True)
