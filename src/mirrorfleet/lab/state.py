"""Where a lab lives on disk, and the state file that inventories and `down` read.

The state file is written before any kernel object is made and rewritten as hosts
come up, so a crashed `up` still leaves enough behind for `down` to clean it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mirrorfleet.errors import UserError

DEFAULT_LAB = "lab"
LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,3}$")
MAX_IFNAME = 15  # IFNAMSIZ - 1


def state_root() -> Path:
    return Path(os.environ.get("MIRRORFLEET_LAB_ROOT", "/var/lib/mirrorfleet/labs"))


def cache_root() -> Path:
    return Path(os.environ.get("MIRRORFLEET_CACHE", "/var/cache/mirrorfleet"))


def lab_name(name: str | None = None) -> str:
    name = name or os.environ.get("MIRRORFLEET_LAB") or DEFAULT_LAB
    if not LAB_NAME_RE.match(name):
        raise UserError(
            f"bad lab name {name!r}: 1-4 lowercase letters or digits, starting with a letter "
            "(it prefixes kernel interface names, which are limited to 15 characters)"
        )
    return name


@dataclass
class HostState:
    name: str
    groups: list[str]
    address: str
    data: dict[str, Any]
    netns: str
    veth: str
    pid: int | None = None


@dataclass
class LabState:
    name: str
    subnet: str
    gateway: str
    bridge: str
    template: str
    hosts: list[HostState] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        return kernel_prefix(self.name)

    @property
    def dir(self) -> Path:
        return lab_dir(self.name)

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def secrets_dir(self) -> Path:
        return self.dir / "secrets"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    def host(self, name: str) -> HostState:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise UserError(f"unknown lab host {name!r}; lab {self.name!r} has: {known}")

    def host_dir(self, name: str) -> Path:
        return self.dir / "hosts" / name

    def save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(self.dir / "state.json")


def kernel_prefix(name: str) -> str:
    return f"mf{name}"


def lab_dir(name: str) -> Path:
    return state_root() / name


def load_state(name: str | None = None) -> LabState | None:
    path = lab_dir(lab_name(name)) / "state.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UserError(
            f"lab state {path} is unreadable ({exc}); run `mirrorfleet lab down` to clean up"
        ) from None
    hosts = [HostState(**h) for h in raw.pop("hosts", [])]
    return LabState(**raw, hosts=hosts)


def require_state(name: str | None = None) -> LabState:
    state = load_state(name)
    if state is None:
        raise UserError(f"lab {lab_name(name)!r} is not up: run `mirrorfleet lab up` first")
    return state
