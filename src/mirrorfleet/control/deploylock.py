"""One deploy of a fleet at a time from a control node.

Two pyinfra runs over the same hosts race each other: apt's lock fails one half-way,
and a restart from one lands in the middle of the other's config writes. The second
run stops before it changes anything, and says who holds the fleet.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import IO

from mirrorfleet.errors import UserError

LOCK_NAME = "deploy.lock"
_held: dict[Path, IO[str]] = {}  # kept open for the life of the pyinfra process


def hold(secrets_dir: Path) -> None:
    """Take the fleet's deploy lock, or raise naming the run that holds it."""
    if not secrets_dir.is_dir():
        raise UserError(
            f"secrets folder {secrets_dir} does not exist: run `mirrorfleet keys init` first"
        )
    path = (secrets_dir / LOCK_NAME).resolve()
    if path in _held:
        return
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(
            f"another deploy of this fleet is running ({holder}); "
            f"nothing was changed: wait for it to finish, then run again ({path})"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n")
    handle.flush()
    _held[path] = handle
