"""The full sync: walk the whole tree, for when the records cannot say what changed
(no local stamp, a gap past the records kept, a record missing or forged, a delta
too big, `agent sync --full`, the daily audit).

1. Scan: a dry run lists what upstream no longer has. It ends before anything else
   is read, and upstream rewrites an index before it drops a file the index named,
   so no index fetched later can name what the scan lists.
2. List: a dry run lists everything but content (index pages, .mirror/) that
   differs from what we serve.
3. Pages: exactly those files are fetched into the staging folder. Nothing served
   changes yet.
4. Content: the content paths, adds only. This walk starts after the pages were
   read, so every file they link is on disk before any of them is served.
5. Move the staged pages into place, deepest first, then delete what the scan
   listed. Neither step depends on rsync's sort order, which puts Debian's `dists`
   before its `pool`.
The caller puts the verified stamp in place last.

A sync killed at any point leaves a tree whose every index names files that exist;
the next sync clears the staging folder and finishes the job.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mirrorfleet.agent.rsync import ITEM, move_staged, run_rsync, unescape, write_list
from mirrorfleet.config import AgentConfig

log = logging.getLogger("mirrorfleet.agent")

DELETING = b"*deleting "


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


def full_sync(config: AgentConfig) -> int:
    """Steps 1 to 5; bytes received."""
    started = time.monotonic()
    gone = deletions(run_rsync(config, "scan")[1])
    pages = changed_files(run_rsync(config, "list")[1])
    received = 0
    if pages:
        write_list(config, "pages", pages)
        received += run_rsync(config, "pages")[0]
    fetched = time.monotonic()
    received += run_rsync(config, "content")[0]
    walked = time.monotonic()
    moved = move_staged(config.tree)
    delete_gone(config.tree, gone)
    log.info(
        "full: %d pages staged in %.1fs, content walked in %.1fs, "
        "%d moved in and %d deleted in %.1fs",
        len(pages),
        fetched - started,
        walked - fetched,
        moved,
        len(gone),
        time.monotonic() - walked,
    )
    return received
