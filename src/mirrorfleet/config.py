"""The host config files (TOML): one dataclass each, checked as they load, and
rendered from the same dataclass by the roles (`dumps`), so the inventory, the
files on the hosts and the daemons share one schema.

A bad config stops the service with one line naming the key, before it touches the
tree, so the old state keeps being served.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from mirrorfleet.errors import UserError

# Top-level paths holding content: synced first and never deleted early. Everything
# else (index pages, .mirror/) is synced after them.
PRESETS: dict[str, tuple[str, ...]] = {
    "pypi": ("packages",),
    "debian": ("pool",),
}

T = TypeVar("T")

# PyPI makes roughly 10,000 serials a day (one per upload, yank or removal). The
# origin keeps a change record per serial this long, so a mirror that was off for a
# day catches up from the records instead of walking the whole tree.
KEEP_RECORDS = 20_000
# The origin re-signs its stamp every HEARTBEAT seconds, each good for STAMP_LIFETIME
# (tree/stamp.py): six heartbeats may fail before a fleet goes stale for its clients.
HEARTBEAT = 300
STAMP_LIFETIME = 1800

# The least max_file_size an agent takes: the bound applies to index pages too, and the
# origin makes pages up to content/pages.py's MAX_PAGE_BYTES (config cannot import it).
MIN_FILE_SIZE = 64 * 1024 * 1024

AGENT_PORT = 8873  # the sync agent: POST /ping, GET /metrics, /status
MONITOR_PORT = 8874  # the monitor daemon: POST /ping, GET /metrics, /status.json
# How a host's nginx serves (roles/tls): "acme" (a certificate from an ACME CA, by
# certbot), "own" (the operator's certificate and key) or "off" (plain HTTP, kept on
# purpose). Host data `tls`; the roles and the checks read it for any host.
TLS_MODES = ("acme", "own", "off")
TLS_DEFAULT = "acme"
# How the ACME CA checks the name (host data `acme_challenge`): HTTP-01 through the
# host's own nginx, or DNS-01 through the fleet's BIND primary (RFC 2136, a TSIG key
# that may write only that host's `_acme-challenge` TXT).
ACME_CHALLENGES = ("http-01", "dns-01")


def host_port(listen: str) -> tuple[str, int]:
    """ "HOST:PORT" (HOST may be empty: every address); ValueError when it is not."""
    host, _, port = listen.rpartition(":")
    return host or "0.0.0.0", int(port)


@dataclass(frozen=True)
class OriginConfig:
    name: str
    tree: Path
    signing_key: Path
    ping_secret: Path
    preset: str = "pypi"
    ping: tuple[str, ...] = ()
    # publish's own state (publish.sqlite): what the tree held at the last publish,
    # so the next one finds what changed without hashing the whole tree
    state_dir: Path = Path("/var/lib/mirrorfleet/origin")
    keep_records: int = KEEP_RECORDS  # change records kept in .mirror/changes/
    # how long each stamp counts as fresh, and how often the heartbeat re-signs it
    # (tree/stamp.py): a fleet the heartbeat stops reaching goes stale after this long
    stamp_lifetime: int = STAMP_LIFETIME
    heartbeat: int = HEARTBEAT
    # the root-signed keys document (`mirrorfleet keys certify`) served at
    # .mirror/keys.json; unset: verifiers pin this origin's key itself
    keys_document: Path = Path()


@dataclass(frozen=True)
class AgentConfig:
    name: str
    tree: Path
    upstream_rsync: str
    upstream_http: str
    public_keys: tuple[str, ...]
    ping_secret: Path
    preset: str = "pypi"
    listen: str = f"0.0.0.0:{AGENT_PORT}"
    interval: int = 300
    notify: tuple[str, ...] = ()
    bwlimit_kbps: int = 0
    state_dir: Path = Path("/var/lib/mirrorfleet")
    rsync_timeout: int = 600
    retries: int = 3
    content: tuple[str, ...] = field(default=())
    max_delta_serials: int = KEEP_RECORDS  # further behind: walk the whole tree
    max_delta_paths: int = 100_000  # more changed paths than this: walk the whole tree
    # The largest file a sync copies (rsync --max-size), so a hostile upstream cannot
    # fill the disk with one file. PyPI takes uploads up to 100 MB by default and raises
    # that per project on request, to a few GB for the largest (CUDA and ML wheels);
    # 10 GiB leaves room above those. Debian's largest files are far smaller.
    max_file_size: int = 10 * 1024**3
    ca_file: Path = Path()  # trust only this CA (PEM) for an https upstream; unset: the system's
    # how many of public_keys must sign the keys document (tree/trust.py); with 1, a
    # pinned key may also sign stamps directly (a fleet without an offline root)
    root_threshold: int = 1

    @property
    def content_paths(self) -> tuple[str, ...]:
        return self.content or PRESETS[self.preset]

    @property
    def listen_address(self) -> tuple[str, int]:
        return host_port(self.listen)


@dataclass(frozen=True)
class MonitorConfig:
    """The monitor daemon: what to probe (fleet), where to publish (dns), how to judge."""

    fleet: Path  # fleet.toml: origin, keys, mirrors
    ping_secret: Path
    dns: Path = Path()  # dns.toml; unset: probe and report, publish nothing
    status_dir: Path = Path("/var/lib/mirrorfleet/status")
    listen: str = f"0.0.0.0:{MONITOR_PORT}"  # POST /ping, GET /metrics, /status.json
    interval: int = 30  # seconds between full probes
    down_after: int = 2  # unreachable probes in a row before a mirror is down
    up_after: int = 2  # good probes in a row before a down mirror is back
    lag_grace: int = 10  # seconds behind the head before a mirror is lagging
    min_listed: int = 1  # fail static below this many mirrors up
    spot_checks: int = 2  # projects checked per probe (page and one file each)
    max_spot_file: int = 4 * 1024 * 1024  # bigger files only have to exist
    max_parallel: int = 32
    history_step: int = 300  # seconds between history samples (a day is 288)
    history_samples: int = 288
    ca_file: Path = Path()  # trust only this CA (PEM) for HTTPS; unset: the system's

    @property
    def listen_address(self) -> tuple[str, int]:
        return host_port(self.listen)


PROVIDERS = ("rfc2136", "route53")


@dataclass(frozen=True)
class DnsConfig:
    """Where and how the fleet's records are published."""

    zone: str
    provider: str = "rfc2136"
    owner: str = "mirrorfleet"
    ttl: int = 60
    max_withdraw_share: int = 50  # percent of listed mirrors one plan may withdraw
    # rfc2136: the primary server and the publisher's TSIG key
    server: str = ""
    port: int = 53
    key_name: str = ""
    key_file: Path = Path()  # the TSIG secret, base64, mode 0600
    # route53: the hosted zone; credentials come from boto3's usual chain
    hosted_zone_id: str = ""
    region: str = "us-east-1"
    endpoint_url: str = ""  # another Route 53 endpoint (a test server); empty: AWS


def _load(path: Path, cls: type[T]) -> T:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"config {path} is unreadable: {exc}") from None
    return build(raw, cls, str(path))


def build(raw: dict[str, Any], cls: type[T], where: str = "config") -> T:
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - set(known)
    if unknown:
        raise UserError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
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
        raise UserError(f"{where}: missing required key(s) {missing}") from None
    _check(config, where)
    return config


def _expect(value: Any, kind: type, name: str, where: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = {int: "an integer", str: "a string", list: "a list"}[kind]
        raise UserError(f"{where}: {name} must be {expected}, got {value!r}")
    return value


def _check(config: Any, where: str) -> None:
    if isinstance(config, DnsConfig):
        _check_dns(config, where)
        return
    if isinstance(config, MonitorConfig):
        _check_monitor(config, where)
        return
    if not isinstance(config, OriginConfig | AgentConfig):
        return  # other callers check their own
    if config.preset not in PRESETS:
        raise UserError(
            f"{where}: preset {config.preset!r} is unknown (known: {', '.join(PRESETS)})"
        )
    if isinstance(config, OriginConfig):
        if config.keep_records < 1:
            raise UserError(f"{where}: keep_records must be at least 1")
        if not 10 <= config.heartbeat <= 86400:
            raise UserError(f"{where}: heartbeat must be 10-86400 seconds")
        if config.stamp_lifetime < 2 * config.heartbeat:
            raise UserError(
                f"{where}: stamp_lifetime ({config.stamp_lifetime}s) must be at least twice "
                f"the heartbeat ({config.heartbeat}s), or one late heartbeat stales the fleet"
            )
    urls = list(getattr(config, "ping", ())) + list(getattr(config, "notify", ()))
    if isinstance(config, AgentConfig):
        urls.append(config.upstream_http)
        if urlparse(config.upstream_rsync).scheme != "rsync":
            raise UserError(f"{where}: upstream_rsync must be an rsync:// URL")
        if not config.public_keys:
            raise UserError(f"{where}: public_keys must name at least one key")
        if not 1 <= config.root_threshold <= len(config.public_keys):
            raise UserError(f"{where}: root_threshold must be 1 to the number of public_keys")
        if config.interval < 10:
            raise UserError(f"{where}: interval must be at least 10 seconds")
        # at least the largest index page the origin makes (content/pages.py); at most 1 TiB
        if not MIN_FILE_SIZE <= config.max_file_size <= 1 << 40:
            raise UserError(f"{where}: max_file_size must be {MIN_FILE_SIZE}-{1 << 40} bytes")
        try:
            config.listen_address  # noqa: B018
        except ValueError:
            raise UserError(f"{where}: listen must be HOST:PORT") from None
        for path in config.content_paths:
            if "/" in path.strip("/") or path in ("", ".", "..", ".mirror"):
                raise UserError(f"{where}: content path {path!r} must be a top-level dir")
    for url in urls:
        if urlparse(url).scheme not in ("http", "https"):
            raise UserError(f"{where}: {url!r} is not an http(s) URL")


def _check_dns(config: DnsConfig, where: str) -> None:
    import dns.exception  # here, not at the top: `origin publish` starts faster without it
    import dns.name

    if config.provider not in PROVIDERS:
        raise UserError(f"{where}: provider must be one of {', '.join(PROVIDERS)}")
    try:
        dns.name.from_text(config.zone)
    except dns.exception.DNSException as exc:
        raise UserError(f"{where}: zone {config.zone!r} is not a DNS name: {exc}") from None
    if not 1 <= config.port <= 65535 or not 30 <= config.ttl <= 86400:
        raise UserError(f"{where}: port 1-65535 and ttl 30-86400")
    if not 1 <= config.max_withdraw_share <= 100:
        raise UserError(f"{where}: max_withdraw_share is a percentage, 1-100")
    needed = {
        "rfc2136": ("server", "key_name", "key_file"),
        "route53": ("hosted_zone_id",),
    }[config.provider]
    missing = [k for k in needed if getattr(config, k) in ("", Path())]
    if missing:
        raise UserError(f"{where}: provider {config.provider} needs {', '.join(missing)}")
    if config.endpoint_url and urlparse(config.endpoint_url).scheme not in ("http", "https"):
        raise UserError(f"{where}: endpoint_url must be an http(s) URL")


def _check_monitor(config: MonitorConfig, where: str) -> None:
    limits = {
        "interval": (1, 3600),
        "down_after": (1, 100),
        "up_after": (1, 100),
        "lag_grace": (0, 86400),
        "min_listed": (0, 1000),
        "spot_checks": (0, 20),
        "max_spot_file": (0, 1 << 30),
        "max_parallel": (1, 256),
        "history_step": (1, 86400),
        "history_samples": (2, 10000),
    }
    for name, (low, high) in limits.items():
        if not low <= getattr(config, name) <= high:
            raise UserError(f"{where}: {name} must be {low}-{high}")
    try:
        config.listen_address  # noqa: B018
    except ValueError:
        raise UserError(f"{where}: listen must be HOST:PORT") from None


def load_monitor_config(path: Path) -> MonitorConfig:
    return _load(path, MonitorConfig)


def load_origin_config(path: Path) -> OriginConfig:
    return _load(path, OriginConfig)


def load_agent_config(path: Path) -> AgentConfig:
    return _load(path, AgentConfig)


def load_dns_config(path: Path) -> DnsConfig:
    return _load(path, DnsConfig)


# -- writing: what the roles put on the hosts -----------------------------------------


def dumps(config: Any, header: str = "") -> str:
    """A config dataclass as TOML that `build` reads back to an equal dataclass.

    Fields go in their declared order: every value the daemon will use, defaults
    included, except an optional field left empty ("", (), Path()). Values are
    strings, ints, paths and tuples of strings; a tuple of dataclasses (fleet.toml's
    mirrors) becomes an array of tables after the plain keys. `header` is written
    first as comment lines. The same config always gives the same bytes.
    """
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    tables: list[tuple[str, Any]] = []
    for name, value in _set_fields(config):
        if isinstance(value, tuple) and value and all(is_dataclass(v) for v in value):
            tables += [(name, v) for v in value]
        else:
            lines.append(f"{name} = {_value(value, name)}")
    for name, table in tables:
        lines += ["", f"[[{name}]]"]
        lines += [f"{key} = {_value(value, key)}" for key, value in _set_fields(table)]
    return "\n".join(lines) + "\n"


def _set_fields(config: Any) -> list[tuple[str, Any]]:
    if not is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"not a dataclass instance: {config!r}")
    found = []
    for spec in fields(config):
        value = getattr(config, spec.name)
        if spec.default in ("", (), Path()) and value == spec.default:
            continue  # an optional field left empty: the loader gives the same
        found.append((spec.name, value))
    return found


def _value(value: Any, name: str) -> str:
    if isinstance(value, bool):
        raise TypeError(f"{name}: booleans are not part of the config schema")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str | Path):
        return toml_string(str(value))
    if isinstance(value, tuple | list) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(toml_string(v) for v in value) + "]"
    raise TypeError(f"{name}: cannot write {value!r} as TOML")


# TOML basic strings: these must be escaped; every other character stands as itself
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(text: str) -> str:
    """text as a TOML basic string ("..."), every character kept."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
