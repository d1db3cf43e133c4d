"""What a client remembers between runs: the highest serial it has verified per zone,
and the newest keys document its roots certified.

Without it, a client that used serial 900 yesterday would accept serial 800 today
from a mirror (or a DNS answer) replaying an old, validly signed state: TUF's
rollback attack. With it, `pick` and `pip-config` refuse a head, or a mirror, older
than what this machine already verified, unless told to forget (a fleet rebuilt
from scratch starts its serials again).

The file lives in the user's state directory: $MIRRORFLEET_STATE_DIR, else
$XDG_STATE_HOME/mirrorfleet, else ~/.local/state/mirrorfleet. Writers take a lock
and write atomically, so two clients at once never lose the higher serial.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirrorfleet.errors import UserError
from mirrorfleet.tree.files import atomic_write

STATE_ENV = "MIRRORFLEET_STATE_DIR"
FILE = "verified-serials.json"


def state_dir() -> Path:
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "mirrorfleet"


def zone_key(zone: str) -> str:
    return zone.rstrip(".").lower() + "."


@dataclass(frozen=True)
class Memory:
    path: Path

    @classmethod
    def for_user(cls) -> Memory:
        return cls(state_dir() / FILE)

    def serial(self, zone: str) -> int:
        """The highest serial verified for zone; 0 when none is."""
        return self._load().get(zone_key(zone), 0)

    def remember(self, zone: str, serial: int) -> None:
        """Keep serial as zone's floor, if it is higher than the one kept."""
        with self._locked():
            seen = self._load()
            if serial > seen.get(zone_key(zone), 0):
                self._save({**seen, zone_key(zone): serial})

    def forget(self, zone: str) -> None:
        """Drop zone's floor and its kept keys document; a damaged file is written
        again with what it still held."""
        with self._locked():
            seen = self._load(strict=False)
            self._save({k: v for k, v in seen.items() if k != zone_key(zone)})
            keys_file(zone, self.path.parent).unlink(missing_ok=True)

    def _load(self, strict: bool = True) -> dict[str, int]:
        try:
            seen = json.loads(self.path.read_text())
            if not isinstance(seen, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in seen.values()
            ):
                raise ValueError("not a map of zone to serial")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            if not strict:
                return {}  # forgetting mends a damaged file
            raise UserError(
                f"{self.path} is unreadable ({exc}); run with --forget to start it again"
            ) from None
        return seen

    def _save(self, seen: dict[str, int]) -> None:
        data = (json.dumps(seen, indent=2, sort_keys=True) + "\n").encode()
        atomic_write(self.path, data)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = self.path.with_name(f".{self.path.name}.lock").open("a")
        except OSError as exc:
            raise UserError(f"cannot keep verified serials in {self.path.parent}: {exc}") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def keys_file(zone: str, directory: Path | None = None) -> Path:
    """Where a client keeps the zone's keys document (tree/trust.py) it verified last."""
    return (directory or state_dir()) / f"keys-{zone_key(zone)}json"


def keep_keys(path: Path, raw: bytes) -> str | None:
    """Keep a verified keys document; why not, when it cannot be kept (the client then
    fetches it again next time, and holds no floor for it)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, raw)
    except OSError as exc:
        return f"cannot keep the keys document in {path}: {exc.strerror or exc}"
    return None
