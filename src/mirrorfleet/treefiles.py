"""Writing into a published tree: every file appears whole or not at all, and is
owned like the tree itself, whoever runs the command."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

META_DIR = ".mirror"
# Files being written are dotfiles ending in this; rsync and nginx never pass them on.
TMP_SUFFIX = ".tmp"


def atomic_write(path: Path, data: bytes, tree: Path, mode: int = 0o644) -> None:
    _makedirs(path.parent, tree)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        _own_like(Path(tmp), tree)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _makedirs(directory: Path, tree: Path) -> None:
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
