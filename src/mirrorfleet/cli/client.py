"""`mirrorfleet pick | list | check | pip-config`: what end users run.

The discovery and choice logic lives in mirrorfleet.client; this module is only the
commands around it (options, output)."""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlparse

import click

from mirrorfleet import web
from mirrorfleet.cli.output import emit_json, err, out, table, warn
from mirrorfleet.client.memory import Memory, keep_keys, keys_file, zone_key
from mirrorfleet.client.settings import PROXY_LISTEN
from mirrorfleet.errors import UserError

F = TypeVar("F", bound=Callable[..., Any])
PICK_BATCH = 4  # meta records a pick reads first; more only if those all fail
PROXY_URL = f"http://{PROXY_LISTEN}/"  # where `mirrorfleet proxy` listens by default


def lookup_options(command: F) -> F:
    """Where to look, and which origin key to trust."""
    options = [
        click.option(
            "--zone", required=True, help="The fleet's DNS zone, e.g. mirrors.example.org."
        ),
        click.option(
            "--key",
            "keys",
            multiple=True,
            envvar="MIRRORFLEET_KEY",
            help="The fleet's root public key (base64), or the origin's own key for a fleet "
            "without an offline root; repeatable. Env: MIRRORFLEET_KEY.",
        ),
        click.option(
            "--root-threshold",
            "threshold",
            type=click.IntRange(1, 16),
            default=1,
            envvar="MIRRORFLEET_ROOT_THRESHOLD",
            show_default=True,
            help="How many of the --key roots must sign the fleet's keys document.",
        ),
        click.option(
            "--server",
            "servers",
            multiple=True,
            help="Ask this nameserver (IP) instead of the system's; repeatable.",
        ),
        click.option("--port", type=click.IntRange(1, 65535), default=53, show_default=True),
        click.option("--region", help="Only mirrors of this region (its own SRV name)."),
        click.option(
            "--dnssec",
            "anchor_file",
            type=click.Path(exists=True, dir_okay=False),
            envvar="MIRRORFLEET_TRUST_ANCHOR",
            help="Validate every answer with DNSSEC, trusting the zone's DS or DNSKEY "
            "lines in this file. Env: MIRRORFLEET_TRUST_ANCHOR.",
        ),
        click.option(
            "--ca-file",
            type=click.Path(exists=True, dir_okay=False),
            help="Trust only this CA file (PEM) for the mirrors' HTTPS; else SSL_CERT_FILE, "
            "REQUESTS_CA_BUNDLE or the system's store.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 60),
            default=2.0,
            show_default=True,
            help="Seconds per DNS try; HTTP checks get twice that.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Machine-readable output."),
    ]

    @functools.wraps(command)
    def with_where(
        zone: str,
        keys: tuple[str, ...],
        threshold: int,
        servers: tuple[str, ...],
        port: int,
        region: str | None,
        anchor_file: str | None,
        ca_file: str | None,
        timeout: float,
        **rest: Any,
    ) -> Any:
        web.use_ca_file(ca_file)  # every HTTPS read of this command trusts it
        where = Where(zone, keys, servers, port, region, anchor_file, timeout, ca_file, threshold)
        return command(where, **rest)

    wrapped: Any = with_where
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped


for_option = click.option(
    "--for",
    "projects",
    metavar="PROJECTS",
    help="Comma-separated projects: a mirror behind the head will do if none of them changed.",
)


forget_option = click.option(
    "--forget",
    is_flag=True,
    help="Forget the highest serial this machine verified for the zone (a fleet rebuilt "
    "from scratch); otherwise an older head or mirror is refused as a rollback.",
)


def verified_floor(zone: str, forget: bool) -> tuple[Memory, int]:
    """The user's memory of verified serials (client/memory.py) and zone's floor."""
    memory = Memory.for_user()
    if forget:
        memory.forget(zone)
    return memory, memory.serial(zone)


@dataclass(frozen=True)
class Where:
    """The lookup options every client command shares."""

    zone: str
    keys: tuple[str, ...]
    servers: tuple[str, ...]
    port: int
    region: str | None
    anchor_file: str | None
    timeout: float
    ca_file: str | None = None
    threshold: int = 1  # of the keys (roots) that must sign the keys document


def _discover(where: Where, rng: random.Random | None = None, batch: int | None = None):
    """(discovery, keys, read_more): every mirror, or with an rng the first `batch` in
    pick order and a function that reads the next ones."""
    from mirrorfleet.client.discovery import Lookup, discover, read_more
    from mirrorfleet.tree.keys import parse_public_key
    from mirrorfleet.tree.trust import Keyring

    if not where.keys:
        raise click.UsageError(
            "give the fleet's key with --key, MIRRORFLEET_KEY, or `keys` in client.toml"
        )
    for server in where.servers:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise click.UsageError(f"--server {server!r} is not an IP address") from None
    try:
        parsed = Keyring([parse_public_key(k) for k in where.keys], where.threshold)
    except (UserError, ValueError) as exc:
        raise click.UsageError(f"--key: {exc}") from None
    # the keys document verified last time: its version is the floor (a rollback of
    # it would bring a revoked key back), and it spares a fetch while it is current
    kept = keys_file(where.zone)
    problem = parsed.load(kept)
    if problem:
        err.print(f"warning: the kept keys document is refused ({problem})", markup=False)
    held = parsed.version
    anchor = None
    if where.anchor_file:
        from mirrorfleet.client.dnssec import TrustAnchor

        anchor = TrustAnchor.from_file(where.anchor_file)
    lookup = Lookup(
        where.zone,
        parsed,
        where.servers,
        where.port,
        where.region,
        where.timeout,
        lifetime=2.5 * where.timeout,
        anchor=anchor,
    )

    def more(found):
        return read_more(lookup, found, batch or PICK_BATCH)

    found = discover(lookup, rng, batch)
    if parsed.raw is not None and parsed.version > held:
        problem = keep_keys(kept, parsed.raw)
        if problem:
            err.print(f"warning: {problem}", markup=False)
    return found, parsed, more


def _projects(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


@click.command()
@lookup_options
@click.option("--max-lag", help="Accept mirrors this far behind: serials (2) or time (300s, 5m).")
@for_option
@click.option("--seed", type=int, help="Seed the weighted random pick (reproducible).")
@click.option(
    "--probe",
    type=click.IntRange(0, 16),
    default=0,
    help="Time a HEAD request to the top N candidates and take the fastest.",
)
@click.option("--fallback", metavar="URL", help="Print this URL instead of failing.")
@forget_option
def pick(
    where: Where,
    as_json: bool,
    max_lag: str | None,
    projects: str | None,
    seed: int | None,
    probe: int,
    fallback: str | None,
    forget: bool,
) -> None:
    """Print the URL of a fresh mirror, picked by RFC 2782 priority and weight."""
    from mirrorfleet.client.choose import MaxLag, choose

    lag = MaxLag.parse(max_lag)
    rng = random.Random(seed)
    try:
        memory, floor = verified_floor(where.zone, forget)
        discovery, parsed, more = _discover(where, rng, batch=max(PICK_BATCH, probe))
        choice = choose(
            discovery,
            parsed,
            lag,
            rng,
            2 * where.timeout,
            _projects(projects),
            probe,
            more,
            floor,
        )
        memory.remember(where.zone, choice.stamp.serial)
        warn(choice.warnings)
    except UserError as exc:  # no answer, no SRV, a bad head, nothing fresh
        if fallback is None:
            raise
        warn([f"{exc}; using --fallback"])
        if as_json:
            emit_json({"url": fallback, "fallback": True, "why": str(exc)})
        else:
            out.print(fallback, soft_wrap=True)
        return
    if as_json:
        emit_json(
            {
                "url": choice.mirror.url,
                "target": choice.mirror.target,
                "serial": choice.stamp.serial,
                "head": asdict(discovery.head),
                "why": f"priority {choice.mirror.priority}, weight {choice.mirror.weight}, "
                f"stamp serial {choice.stamp.serial} of {discovery.head.serial}",
                "fallbacks": [m.url for m in choice.fallbacks],
                "skipped": [{"target": t, "why": w} for t, w in choice.skipped],
            }
        )
    else:
        out.print(choice.mirror.url, soft_wrap=True)


@click.command(name="list")
@lookup_options
def list_mirrors(
    where: Where,
    as_json: bool,
) -> None:
    """Every listed mirror: state, serial, lag, priority and weight."""

    discovery, _, _ = _discover(where)
    head = discovery.head
    rows = [
        {**asdict(m), "lag": None if m.serial is None else head.serial - m.serial}
        for m in sorted(discovery.mirrors, key=lambda m: (m.priority, -m.weight, m.target))
    ]
    if as_json:
        emit_json({"head": asdict(head), "mirrors": rows, "warnings": list(discovery.warnings)})
        return
    warn(discovery.warnings)
    out.print(f"head serial {head.serial} from {head.origin}")
    listing = table("mirror", "state", "serial", "lag", "priority", "weight", "url")
    colors = {"fresh": "green", "lagging": "yellow"}
    for row in rows:
        state = row["state"] or "unusable"
        listing.add_row(
            row["target"],
            f"[{colors.get(state, 'red')}]{state}[/]",
            str(row["serial"] if row["serial"] is not None else "-"),
            str(row["lag"] if row["lag"] is not None else "-"),
            str(row["priority"]),
            str(row["weight"]),
            row["url"] or (row["problem"] or ""),
        )
    out.print(listing)


@click.command()
@lookup_options
@click.option("--mirror", "mirror_url", required=True, help="The mirror's base URL.")
@click.option("--max-lag", help="Accept this far behind: serials (2) or time (300s, 5m).")
@for_option
def check(
    where: Where,
    as_json: bool,
    mirror_url: str,
    max_lag: str | None,
    projects: str | None,
) -> None:
    """Is this mirror fresh? Exit 0 if so, 1 if not (with the reason)."""
    from mirrorfleet.client.choose import MaxLag, ProjectView, dns_verdict, stamp_verdict
    from mirrorfleet.client.projects import MAX_BEHIND, wanted
    from mirrorfleet.tree.stamp import StampUnavailable, fetch_stamp

    lag = MaxLag.parse(max_lag)
    discovery, parsed, _ = _discover(where)
    host = (urlparse(mirror_url).hostname or "").lower()
    base = mirror_url.rstrip("/")
    listed = next(
        (m for m in discovery.mirrors if m.target == host or (m.url and m.url.rstrip("/") == base)),
        None,
    )
    serial = None
    if listed is None:
        why: str | None = f"{host or mirror_url} is not listed in {where.zone}"
    elif projects:
        usable = [m for m in discovery.mirrors if not m.problem and m.state != "down"]
        view = ProjectView(discovery, wanted(_projects(projects)), parsed, 2 * where.timeout)
        why = listed.problem or view.verdict(listed.serial or 0, usable)
        lag = MaxLag(serials=MAX_BEHIND)
    else:
        why = dns_verdict(listed, discovery.head, lag)
    if why is None and listed is not None:
        try:
            stamp = fetch_stamp(mirror_url, parsed, 2 * where.timeout)[0]
            serial = stamp.serial
            why = stamp_verdict(stamp, listed, discovery.head, lag)
        except StampUnavailable as exc:
            why = str(exc)
    if as_json:
        emit_json(
            {
                "mirror": mirror_url,
                "fresh": why is None,
                "why": why,
                "serial": serial,
                "head": discovery.head.serial,
            }
        )
    elif why is None:
        out.print(f"fresh: serial {serial} of {discovery.head.serial}")
    else:
        out.print(f"not fresh: {why}", soft_wrap=True)
    if why is not None:
        raise SystemExit(1)


def pip_settings(index: str, ca_file: str | None = None) -> dict[str, str]:
    """[global] settings for pip: pip has no fallback index, so the next picks are only
    listed in a comment (extra-index-url would merge them, not fall back). `cert`
    when the mirror's certificate comes from a CA the system does not hold."""
    settings = {"index-url": index}
    host = urlparse(index).hostname
    if urlparse(index).scheme == "http" and host:
        settings["trusted-host"] = host
    if ca_file:
        settings["cert"] = os.path.abspath(ca_file)
    return settings


def uv_toml(index: str, insecure_host: str | None) -> str:
    """uv.toml: the mirror as uv's default index. uv moves to another index only on
    a 401, 403 or 404 (its `first-index` strategy), never because an index lags, so
    a mirror that falls behind after this pick stays in use until you pick again."""
    lines = [f"allow-insecure-host = [{json.dumps(insecure_host)}]"] if insecure_host else []
    lines += ["[[index]]", f"url = {json.dumps(index)}", "default = true"]
    return "\n".join(lines)


def client_config(
    index: str, fmt: str, fallbacks: Sequence[str] = (), ca_file: str | None = None
) -> str:
    """What `pip-config --format fmt` prints for one picked index. `ca_file`: the CA
    the clients must trust for it (pip's `cert`; uv reads SSL_CERT_FILE)."""
    settings = pip_settings(index, ca_file)
    insecure, cert = settings.get("trusted-host"), settings.get("cert")
    if fmt == "env":
        lines = [f"export PIP_INDEX_URL={index}", f"export UV_DEFAULT_INDEX={index}"]
        if insecure:
            lines += [f"export PIP_TRUSTED_HOST={insecure}", f"export UV_INSECURE_HOST={insecure}"]
        if cert:
            lines += [f"export PIP_CERT={cert}", f"export SSL_CERT_FILE={cert}"]
    elif fmt == "uv":
        lines = [uv_toml(index, insecure)]
        if cert:  # uv.toml has no such key
            lines.insert(0, f"# uv trusts this CA with: export SSL_CERT_FILE={cert}")
    else:
        lines = ["[global]", *(f"{k} = {v}" for k, v in settings.items())]
        lines += [f"# next picks: {' '.join(fallbacks)}"] if fallbacks else []
    return "\n".join(lines)


def user_config_file(variable: str, tool: str, name: str) -> Path:
    """A client's per-user config file: the one $variable names, else the XDG
    location the tool reads ($XDG_CONFIG_HOME, else ~/.config)."""
    explicit = os.environ.get(variable)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / tool / name


def pip_config_file() -> Path:
    return user_config_file("PIP_CONFIG_FILE", "pip", "pip.conf")


def uv_config_file() -> Path:
    return user_config_file("UV_CONFIG_FILE", "uv", "uv.toml")


UV_MARK = "# written by mirrorfleet pip-config: it rewrites this file whole"


def write_pip_conf(path: Path, settings: dict[str, str]) -> None:
    """Set the keys in pip.conf's [global], keeping every other setting."""
    import configparser

    config = configparser.ConfigParser()
    try:
        config.read(path)
    except configparser.Error as exc:
        raise UserError(f"{path} is not a pip config file: {exc}") from None
    if not config.has_section("global"):
        config.add_section("global")
    config["global"].update(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        config.write(handle)


def write_uv_toml(path: Path, text: str) -> None:
    """uv.toml, whole: only over a file this command wrote (there is no TOML writer
    here that would keep a user's own settings, so theirs are never touched)."""
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = UV_MARK
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if not old.startswith(UV_MARK):
        raise UserError(
            f"{path} exists and mirrorfleet did not write it; add this to it yourself:\n{text}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{UV_MARK}\n{text}\n")


def proxy_index(url: str, zone: str, timeout: float) -> str:
    """The proxy's /simple/ URL, once its /status says it serves `zone` (a socket-
    activated proxy starts on this very request)."""
    base = url if url.endswith("/") else url + "/"
    try:
        answer = web.get(urljoin(base, "status"), 1024 * 1024, max(timeout, 10.0))
        status = json.loads(answer.body) if answer.status == 200 else None
    except (*web.READ_ERRORS, json.JSONDecodeError) as exc:
        raise UserError(
            f"no mirrorfleet proxy answers at {base} ({exc}): start it with "
            "`mirrorfleet proxy`, or enable its unit (`mirrorfleet proxy-unit --write`)"
        ) from None
    if not isinstance(status, dict) or "zone" not in status:
        raise UserError(f"{base} does not answer as a mirrorfleet proxy (no /status)")
    if zone_key(str(status["zone"])) != zone_key(zone):
        raise UserError(f"the proxy at {base} serves {status['zone']}, not {zone}")
    return urljoin(base, "simple/")


@click.command(name="pip-config")
@lookup_options
@click.option("--max-lag", help="Accept mirrors this far behind: serials (2) or time (300s, 5m).")
@click.option("--for", "projects", metavar="PROJECTS", help="Comma-separated projects you need.")
@click.option("--seed", type=int, help="Seed the weighted random pick (reproducible).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["pip.conf", "env", "uv"]),
    default="pip.conf",
    show_default=True,
    help="pip.conf section, shell exports (pip and uv), or uv.toml.",
)
@click.option(
    "--proxy",
    "proxy_url",
    is_flag=False,
    flag_value=PROXY_URL,
    metavar="URL",
    help=f"Point pip and uv at the local `mirrorfleet proxy` (default {PROXY_URL}), not "
    "at one picked mirror: every request then fails over by itself.",
)
@click.option(
    "--write",
    is_flag=True,
    help="Write it: index-url into your pip.conf (other keys kept), uv.toml for "
    "--format uv, and both with --proxy.",
)
@forget_option
def pip_config(
    where: Where,
    as_json: bool,
    max_lag: str | None,
    projects: str | None,
    seed: int | None,
    fmt: str,
    proxy_url: str | None,
    write: bool,
    forget: bool,
) -> None:
    """Point pip (or uv) at a fresh mirror's /simple/ index, or at the local proxy."""
    from mirrorfleet.client.choose import MaxLag, choose

    fallbacks: list[str] = []
    if proxy_url is not None:
        index = proxy_index(proxy_url, where.zone, 2 * where.timeout)
        ca_file = None  # the proxy checks the mirrors' certificates, not pip
    else:
        rng = random.Random(seed)
        memory, floor = verified_floor(where.zone, forget)
        discovery, parsed, more = _discover(where, rng, PICK_BATCH)
        choice = choose(
            discovery,
            parsed,
            MaxLag.parse(max_lag),
            rng,
            2 * where.timeout,
            _projects(projects),
            more=more,
            floor=floor,
        )
        memory.remember(where.zone, choice.stamp.serial)
        warn(choice.warnings)
        index = urljoin(str(choice.mirror.url), "simple/")
        fallbacks = [urljoin(str(m.url), "simple/") for m in choice.fallbacks]
        ca_file = where.ca_file
    settings = pip_settings(index, ca_file)
    if write:
        if fmt != "uv" or proxy_url is not None:
            path = pip_config_file()
            write_pip_conf(path, settings)
            err.print(f"wrote index-url = {index} to {path}")
        if fmt == "uv" or proxy_url is not None:
            path = uv_config_file()
            write_uv_toml(path, client_config(index, "uv", ca_file=ca_file))
            err.print(f"wrote the default index {index} to {path}")
    if as_json:
        emit_json({"index_url": index, "fallbacks": fallbacks, "pip": settings})
        return
    # markup off: rich would take "[global]" and "[[index]]" for its own tags
    out.print(client_config(index, fmt, fallbacks, ca_file), soft_wrap=True, markup=False)


COMMANDS = (pick, list_mirrors, check, pip_config)


def defaults_from_files(names: Iterable[str]) -> dict[str, dict[str, object]]:
    """click's default_map for each named command, from client.toml."""
    from mirrorfleet.client.settings import click_defaults, load_settings

    defaults = click_defaults(load_settings())
    return {name: defaults for name in names}
