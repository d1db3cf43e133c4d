"""The origin's and the agent's config files (TOML), checked as they load.

A bad config stops the service with one line naming the key, before it touches the
tree, so the old state keeps being served.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from mirrorfleet.errors import MirrorfleetError

# Top-level paths holding content: synced first and never deleted early. Everything
# else (index pages, .mirror/) is synced after them.
PRESETS: dict[str, tuple[str, ...]] = {
    "pypi": ("packages",),
    "debian": ("pool",),
}

T = TypeVar("T")


@dataclass(frozen=True)
class OriginConfig:
    name: str
    tree: Path
    signing_key: Path
    ping_secret: Path
    preset: str = "pypi"
    ping: tuple[str, ...] = ()


@dataclass(frozen=True)
class AgentConfig:
    name: str
    tree: Path
    upstream_rsync: str
    upstream_http: str
    public_keys: tuple[str, ...]
    ping_secret: Path
    preset: str = "pypi"
    listen: str = "0.0.0.0:8873"
    interval: int = 300
    notify: tuple[str, ...] = ()
    bwlimit_kbps: int = 0
    state_dir: Path = Path("/var/lib/mirrorfleet")
    rsync_timeout: int = 600
    retries: int = 3
    content: tuple[str, ...] = field(default=())

    @property
    def content_paths(self) -> tuple[str, ...]:
        return self.content or PRESETS[self.preset]

    @property
    def listen_address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host or "0.0.0.0", int(port)


@dataclass(frozen=True)
class DnsConfig:
    """Where and how the fleet's records are published (RFC 2136 for now)."""

    zone: str
    server: str
    key_name: str
    key_file: Path  # the TSIG secret, base64, mode 0600
    port: int = 53
    owner: str = "mirrorfleet"
    ttl: int = 60
    max_change_share: int = 50  # percent of existing record sets one plan may rewrite


def _load(path: Path, cls: type[T]) -> T:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise MirrorfleetError(f"config {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MirrorfleetError(f"config {path} is unreadable: {exc}") from None
    return build(raw, cls, str(path))


def build(raw: dict[str, Any], cls: type[T], where: str = "config") -> T:
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - set(known)
    if unknown:
        raise MirrorfleetError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for name, spec in known.items():
        if name not in raw:
            continue
        value = raw[name]
        kind = str(spec.type)
        if kind == "Path":
            value = Path(_expect(value, str, name, where))
        elif kind.startswith("tuple"):
            value = tuple(_expect(v, str, name, where) for v in _expect(value, list, name, where))
        elif kind == "int":
            value = _expect(value, int, name, where)
        else:
            value = _expect(value, str, name, where)
        values[name] = value
    try:
        config = cls(**values)
    except TypeError as exc:
        missing = str(exc).split("argument", 1)[-1].strip(": s")
        raise MirrorfleetError(f"{where}: missing required key(s) {missing}") from None
    _check(config, where)
    return config


def _expect(value: Any, kind: type, name: str, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = {int: "an integer", str: "a string", list: "a list"}[kind]
        raise MirrorfleetError(f"{where}: {name} must be {expected}, got {value!r}")
    return value


def _check(config: Any, where: str) -> None:
    if isinstance(config, DnsConfig):
        if not 1 <= config.port <= 65535 or not 30 <= config.ttl <= 86400:
            raise MirrorfleetError(f"{where}: port 1-65535 and ttl 30-86400")
        if not 1 <= config.max_change_share <= 100:
            raise MirrorfleetError(f"{where}: max_change_share is a percentage, 1-100")
        return
    if config.preset not in PRESETS:
        raise MirrorfleetError(
            f"{where}: preset {config.preset!r} is unknown (known: {', '.join(PRESETS)})"
        )
    urls = list(getattr(config, "ping", ())) + list(getattr(config, "notify", ()))
    if isinstance(config, AgentConfig):
        urls.append(config.upstream_http)
        if urlparse(config.upstream_rsync).scheme != "rsync":
            raise MirrorfleetError(f"{where}: upstream_rsync must be an rsync:// URL")
        if not config.public_keys:
            raise MirrorfleetError(f"{where}: public_keys must name at least one key")
        if config.interval < 10:
            raise MirrorfleetError(f"{where}: interval must be at least 10 seconds")
        try:
            config.listen_address  # noqa: B018
        except ValueError:
            raise MirrorfleetError(f"{where}: listen must be HOST:PORT") from None
        for path in config.content_paths:
            if "/" in path.strip("/") or path in ("", ".", "..", ".mirror"):
                raise MirrorfleetError(f"{where}: content path {path!r} must be a top-level dir")
    for url in urls:
        if urlparse(url).scheme not in ("http", "https"):
            raise MirrorfleetError(f"{where}: {url!r} is not an http(s) URL")


def load_origin_config(path: Path) -> OriginConfig:
    return _load(path, OriginConfig)


def load_agent_config(path: Path) -> AgentConfig:
    return _load(path, AgentConfig)


def load_dns_config(path: Path) -> DnsConfig:
    return _load(path, DnsConfig)
