"""Writing into a published tree: every file appears whole or not at all.

One mechanism for the publisher, the agent and the content generator: write a
dotfile ending in TMP_SUFFIX next to the target, then rename it into place. rsync
excludes such files and nginx serves no dotfiles, so a half-written file never
travels.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

META_DIR = ".mirror"
TMP_SUFFIX = ".tmp"


def tmp_path(path: Path) -> Path:
    """Unique per process and thread, so concurrent writers never share one."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")


def atomic_write(
    path: Path,
    data: bytes,
    tree: Path | None = None,
    *,
    mode: int = 0o644,
    durable: bool = True,
    unless_same: bool = False,
    mtime: int | None = None,
) -> bool:
    """Replace path with data; True if written.

    tree: make missing parents, and own everything like the tree (when root).
    durable: fsync before the rename (stamps, manifests); bulk content skips it.
    unless_same: leave an identical file alone, so its mtime stays put.
    mtime: whole seconds to stamp on the file before it appears.
    """
    if unless_same:
        try:
            if path.stat().st_size == len(data) and path.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
    if tree is not None:
        make_parents(path, tree)
    tmp = tmp_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(tmp, mode)  # whatever the umask
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        if tree is not None:
            _own_like(tmp, tree)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def make_parents(path: Path, tree: Path) -> None:
    """Make path's missing parent folders, owned like the tree."""
    directory = path.parent
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        new.mkdir(mode=0o755, exist_ok=True)
        _own_like(new, tree)


def _own_like(path: Path, tree: Path) -> None:
    if os.geteuid() == 0:
        st = tree.stat()
        os.chown(path, st.st_uid, st.st_gid)
