"""The `mirrorfleet` command. Errors the user can fix print one line and exit 1."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mirrorfleet import __version__
from mirrorfleet.errors import MirrorfleetError

if TYPE_CHECKING:
    from mirrorfleet.publish import CycleResult

F = TypeVar("F", bound=Callable[..., Any])
err = Console(stderr=True, highlight=False, soft_wrap=True)  # errors stay one line in logs
out = Console(highlight=False)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def progress(host: str, message: str) -> None:
    err.print(f"[bold cyan]{host:>10}[/] {message}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mirrorfleet")
def cli() -> None:
    """Run a fleet of package mirrors as code."""


@cli.group()
def lab() -> None:
    """A local lab of real systemd hosts (systemd-nspawn), for trying and testing the fleet.

    Needs root. Hosts, addresses and keys are recorded in a state file that
    inventories/lab.py reads, so `pyinfra inventories/lab.py deploy.py` just works.
    """


def _lab_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from mirrorfleet.lab.state import lab_name

    try:
        return lab_name(value)
    except MirrorfleetError as exc:
        raise click.BadParameter(str(exc)) from None


name_option = click.option(
    "--name",
    envvar="MIRRORFLEET_LAB",
    default="lab",
    show_default=True,
    callback=_lab_name,
    help="Lab name (1-4 chars); lets several labs share a machine. Env: MIRRORFLEET_LAB.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@lab.command()
@click.option(
    "--topology",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Topology TOML file (default: the built-in one: origin, dns1-2, monitor, mirror1-3).",
)
@click.option("--mirrors", type=int, help="Number of mirrors (replaces the 'mirrors' group).")
@click.option("--subnet", help="Lab subnet, e.g. 10.231.0.0/24 (default: from the topology).")
@click.option("--dry-run", is_flag=True, help="Show the hosts and addresses; change nothing.")
@name_option
@json_option
def up(
    topology: Path | None,
    mirrors: int | None,
    subnet: str | None,
    dry_run: bool,
    name: str,
    as_json: bool,
) -> None:
    """Build (once) the template and boot every lab host. Safe to rerun."""
    from mirrorfleet.lab.lifecycle import plan_state
    from mirrorfleet.lab.lifecycle import up as lab_up
    from mirrorfleet.lab.template import template_dir
    from mirrorfleet.lab.topology import load_topology

    topo = load_topology(topology, mirrors=mirrors, subnet=subnet)
    if dry_run:
        plan = plan_state(name, topo, str(template_dir() / "rootfs"))
        template_ready = (template_dir() / "complete").exists()
        if as_json:
            emit_json({**asdict(plan), "template_ready": template_ready})
        else:
            out.print(f"template: {plan.template} ({'cached' if template_ready else 'to build'})")
            _print_hosts([{**asdict(h), "state": "planned", "pid": None} for h in plan.hosts])
        return
    state, boots = lab_up(topo, name, report=progress)
    rows = {b.name: b for b in boots}
    if as_json:
        emit_json(
            {
                "name": state.name,
                "subnet": state.subnet,
                "ssh_config": str(state.ssh_config),
                "hosts": [{**asdict(h), **asdict(rows[h.name])} for h in state.hosts],
            }
        )
        return
    for boot in boots:
        if boot.failed_units:
            err.print(
                f"[yellow]{boot.name}: degraded, failed units: {', '.join(boot.failed_units)}"
            )
    _print_hosts([{**asdict(h), "state": rows[h.name].system_state} for h in state.hosts])
    out.print(
        f"ssh: mirrorfleet lab ssh HOST  |  pyinfra: pyinfra inventories/lab.py deploy.py"
        f"{'' if name == 'lab' else f'  (with MIRRORFLEET_LAB={name})'}"
    )


@lab.command()
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@name_option
@json_option
def down(dry_run: bool, name: str, as_json: bool) -> None:
    """Remove every container, overlay, namespace, veth and bridge of the lab.

    Also cleans up after a crashed or killed `up`: it finds the lab's objects by
    name, not only through the state file.
    """
    from mirrorfleet.lab.lifecycle import down as lab_down
    from mirrorfleet.lab.lifecycle import leftovers

    found = leftovers(name) if dry_run else lab_down(name, report=progress)
    remaining = leftovers(name)
    if as_json:
        emit_json({"found": asdict(found), "remaining": asdict(remaining), "dry_run": dry_run})
    else:
        verb = "would remove" if dry_run else "removed"
        out.print(
            f"{verb}: {len(found.processes)} container(s), {len(found.mounts)} mount(s), "
            f"{len(found.netns)} namespace(s), {len(found.links)} link(s)"
        )
    if not dry_run and not remaining.empty():
        raise MirrorfleetError(f"leftovers after down: {asdict(remaining)}")


@lab.command()
@name_option
@json_option
def status(name: str, as_json: bool) -> None:
    """Show each host: address, groups, and what systemd says."""
    from mirrorfleet.lab.lifecycle import status as lab_status

    rows = lab_status(name)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        out.print(f"lab {name!r} is not up")
        return
    _print_hosts(rows)


@lab.command(name="ssh")
@click.argument("host")
@name_option
def ssh_cmd(host: str, name: str) -> None:
    """Open a root shell on HOST."""
    from mirrorfleet.lab.ssh import ssh_argv
    from mirrorfleet.lab.state import require_state

    argv = ssh_argv(require_state(name), host, tty=True)
    os.execvp(argv[0], argv)


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@name_option
def exec_cmd(host: str, command: tuple[str, ...], name: str) -> None:
    """Run COMMAND on HOST as root: mirrorfleet lab exec HOST -- CMD [ARGS...]."""
    import shlex
    import subprocess

    from mirrorfleet.lab.ssh import ssh_argv
    from mirrorfleet.lab.state import require_state

    argv = ssh_argv(require_state(name), host, [shlex.join(command)])
    sys.exit(subprocess.call(argv))


@cli.group()
def keys() -> None:
    """The fleet's secrets: the origin signing key and the ping secret."""


@keys.command(name="init")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Secrets folder (0700; files 0600). Never inside a git checkout you push.",
)
@json_option
def keys_init(directory: Path, as_json: bool) -> None:
    """Create whatever secrets are missing; existing ones are never overwritten."""
    from mirrorfleet.keys import SecretsDir, init_secrets, parse_public_key

    created = init_secrets(directory)
    public = SecretsDir(directory).public_key.read_text().strip()
    parse_public_key(public)
    if as_json:
        emit_json({"dir": str(directory), "created": created, "public_key": public})
    else:
        out.print(
            f"{'created ' + ', '.join(created) if created else 'nothing to do'} in {directory}"
        )
        out.print(f"origin public key: {public}")


def config_option(default: str) -> Callable[[F], F]:
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path(default),
        show_default=True,
    )


@cli.group()
def origin() -> None:
    """Commands run on the origin host."""


@origin.command(name="publish")
@config_option("/etc/mirrorfleet/origin.toml")
@click.option("--force", is_flag=True, help="Publish a new serial even if nothing changed.")
@click.option("--no-ping", is_flag=True, help="Do not ping mirrors (they catch up by timer).")
@json_option
def origin_publish(config_path: Path, force: bool, no_ping: bool, as_json: bool) -> None:
    """Sign a new serial for what landed in the tree, then ping the mirrors."""
    from mirrorfleet.config import load_origin_config
    from mirrorfleet.origin import publish, result_dict

    config = load_origin_config(config_path)
    result = publish(config, force=force, ping=not no_ping, progress=lambda m: err.print(m))
    if as_json:
        emit_json(result_dict(result))
        return
    if not result.published:
        out.print(f"nothing changed: still serial {result.serial}")
        return
    out.print(
        f"published serial {result.serial} ({len(result.changed)} changed, "
        f"{len(result.removed)} removed) in {result.seconds:.2f}s"
    )
    for url, status in result.pings.items():
        out.print(f"  ping {url}: {status or 'unreachable'}")


@origin.command(name="import")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@config_option("/etc/mirrorfleet/origin.toml")
@json_option
def origin_import(source: Path, config_path: Path, as_json: bool) -> None:
    """Bring an existing tree (e.g. bandersnatch's) into the origin's tree.

    Run `mirrorfleet origin publish` afterwards to give it a serial.
    """
    from mirrorfleet.config import load_origin_config
    from mirrorfleet.content.pypi import import_tree

    config = load_origin_config(config_path)
    try:
        count = import_tree(source, config.tree)
    except ValueError as exc:
        raise MirrorfleetError(str(exc)) from None
    if as_json:
        emit_json({"imported": count, "tree": str(config.tree)})
    else:
        out.print(
            f"imported {count} files into {config.tree}; now run `mirrorfleet origin publish`"
        )


INFRA_TESTS = Path(__file__).resolve().parents[2] / "tests" / "infra"


@cli.command()
@click.argument("inventory_path", metavar="INVENTORY", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--junit", "junit", type=click.Path(dir_okay=False), help="Also write JUnit XML here."
)
@click.option("-k", "keyword", help="Only checks matching this pytest -k expression.")
def verify(inventory_path: str, junit: str | None, keyword: str | None) -> None:
    """Check every host of a pyinfra inventory with the role test suite (testinfra)."""
    import subprocess

    if not (INFRA_TESTS / "conftest.py").exists():
        raise MirrorfleetError(
            f"the role checks are not at {INFRA_TESTS}: run verify from a mirrorfleet "
            "checkout (pip install -e .)"
        )
    argv = [sys.executable, "-m", "pytest", str(INFRA_TESTS), "--inventory", inventory_path]
    argv += ["-p", "no:cacheprovider", "-q", "-rfE", "--tb=short", "--no-header"]
    argv += ["--rootdir", str(INFRA_TESTS.parents[1])]
    if junit:
        argv += ["--junitxml", junit]
    if keyword:
        argv += ["-k", keyword]
    sys.exit(subprocess.run(argv, check=False).returncode)


@cli.command(name="demo-content")
@click.argument("tree", type=click.Path(file_okay=False, path_type=Path))
@click.option("--projects", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--versions", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--payload", type=click.IntRange(min=0), default=0, help="Extra bytes per wheel.")
@click.option("--add", "release", metavar="PROJECT==VERSION", help="Add one release instead.")
@json_option
def demo_content(
    tree: Path, projects: int, versions: int, payload: int, release: str | None, as_json: bool
) -> None:
    """Write a PEP 503/691 index of installable demo wheels into TREE."""

    tree.mkdir(parents=True, exist_ok=True)
    try:
        result = _demo_content(tree, projects, versions, payload, release)
    except (ValueError, FileExistsError) as exc:
        raise MirrorfleetError(str(exc)) from None
    if as_json:
        emit_json(result)
    else:
        out.print(", ".join(f"{k}: {v}" for k, v in result.items()))


def _demo_content(
    tree: Path, projects: int, versions: int, payload: int, release: str | None
) -> dict[str, object]:
    from mirrorfleet.content import pypi

    if release:
        project, sep, version = release.partition("==")
        if not sep or not project or not version:
            raise click.BadParameter("use PROJECT==VERSION", param_hint="--add")
        wheel = pypi.add_release(tree, project, version, payload_bytes=payload)
        return {"added": str(wheel.relative_to(tree))}
    names = pypi.generate(tree, projects, versions=versions, payload_bytes=payload)
    return {"projects": len(names), "versions": versions, "tree": str(tree)}


@cli.group()
def agent() -> None:
    """The mirror's sync agent."""


@agent.command(name="run")
@config_option("/etc/mirrorfleet/agent.toml")
def agent_run(config_path: Path) -> None:
    """Run the daemon: sync on authenticated pings, serve /metrics and /status."""
    import logging
    import signal

    from mirrorfleet.agent.daemon import serve
    from mirrorfleet.config import load_agent_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_agent_config(config_path)
    agent_, server, loop = serve(config)
    signal.signal(signal.SIGTERM, lambda *_: agent_.stop())
    try:
        loop.join()
    except KeyboardInterrupt:
        agent_.stop()
    server.shutdown()


@agent.command(name="sync")
@config_option("/etc/mirrorfleet/agent.toml")
@json_option
def agent_sync(config_path: Path, as_json: bool) -> None:
    """Sync once now (the fallback timer runs this). Exits 1 if the sync failed."""
    import logging

    from mirrorfleet.agent.sync import SyncResult, sync_lock, sync_once
    from mirrorfleet.config import load_agent_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_agent_config(config_path)
    with sync_lock(config.state_dir, wait=False) as locked:
        result = sync_once(config) if locked else SyncResult(status="busy")
    if as_json:
        emit_json(result.as_dict())
    else:
        out.print(f"{result.status}: serial {result.serial} {result.error}".rstrip())
    if result.status == "error":
        sys.exit(1)


@cli.group()
def monitor() -> None:
    """The monitor: probes every mirror as a client would and publishes the list in DNS."""


@monitor.command(name="run")
@config_option("/etc/mirrorfleet/monitor.toml")
def monitor_run(config_path: Path) -> None:
    """Run the daemon: probe every interval and on notifications, publish, report."""
    import logging
    import signal

    from mirrorfleet.config import load_monitor_config
    from mirrorfleet.monitor.daemon import load, serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    daemon = load(load_monitor_config(config_path))
    server, loop = serve(daemon)
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    try:
        while loop.is_alive():
            loop.join(1)
    except KeyboardInterrupt:
        daemon.stop()
    server.shutdown()


@monitor.command(name="status")
@click.option(
    "--url",
    default="http://127.0.0.1:8874/status.json",
    show_default=True,
    help="The monitor's status JSON (its listen port, or the status page's /status.json).",
)
@json_option
def monitor_status(url: str, as_json: bool) -> None:
    """Every mirror's state, serial and lag, as the monitor sees it now."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            data = json.loads(response.read(16 * 1024 * 1024))
        mirrors, head = data["mirrors"], data["head"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MirrorfleetError(f"no monitor status at {url}: {exc}") from None
    if as_json:
        emit_json(data)
        return
    out.print(
        f"head serial {head['serial']} ({head['origin']})"
        + (f", [red]{head['error']}[/]" if head.get("error") else "")
    )
    table = Table(box=None)
    for column in ("mirror", "state", "dns", "serial", "lag", "error"):
        table.add_column(column)
    colors = {"fresh": "green", "lagging": "yellow", "down": "red"}
    for m in mirrors:
        table.add_row(
            m["label"],
            f"[{colors.get(m['state'], 'red')}]{m['state']}[/]",
            str(m["published"]),
            str(m["serial"]),
            f"{m['lag_serials']} serial(s)",
            escape(m["error"] or ""),
        )
    out.print(table)


@cli.group(name="dns")
def dns_group() -> None:
    """The fleet's records in DNS: plan against live records, then apply (RFC 2136 or Route 53)."""


def state_options(command: F) -> F:
    """Where the fleet state comes from: a JSON file, or a probe of the live fleet."""
    command = click.option(
        "--fleet",
        "fleet_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Fleet TOML (origin, keys, mirrors): probe every mirror now, as a client would.",
    )(command)
    return click.option(
        "--state",
        "state_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help='Fleet state JSON: {"stamp": <origin stamp.json>, "mirrors": [...]}.',
    )(command)


def _dns_cycle(
    config_path: Path, state_path: Path | None, fleet_path: Path | None, apply: bool, force: bool
) -> CycleResult:
    from mirrorfleet.config import load_dns_config
    from mirrorfleet.probe import load_fleet_config, probe_fleet
    from mirrorfleet.publish import cycle

    if (state_path is None) == (fleet_path is None):
        raise click.UsageError("give exactly one of --state FILE or --fleet FILE")
    config = load_dns_config(config_path)
    if fleet_path is not None:
        state = probe_fleet(load_fleet_config(fleet_path))
    else:
        try:
            state = json.loads(state_path.read_text())  # type: ignore[union-attr]
        except ValueError as exc:
            raise MirrorfleetError(f"{state_path} is not JSON: {exc}") from None
    return cycle(config, state, apply=apply, force=force)


@dns_group.command(name="plan")
@config_option("/etc/mirrorfleet/dns.toml")
@state_options
@json_option
def dns_plan(
    config_path: Path, state_path: Path | None, fleet_path: Path | None, as_json: bool
) -> None:
    """Show what apply would change; send nothing."""
    result = _dns_cycle(config_path, state_path, fleet_path, apply=False, force=False)
    _print_plan(result.plan.summary(), as_json, messages=None)


@dns_group.command(name="apply")
@config_option("/etc/mirrorfleet/dns.toml")
@state_options
@click.option("--force", is_flag=True, help="Apply even a plan that rewrites most records.")
@json_option
def dns_apply(
    config_path: Path,
    state_path: Path | None,
    fleet_path: Path | None,
    force: bool,
    as_json: bool,
) -> None:
    """Apply the plan, conditional on our ownership marker (nothing if it is empty)."""
    result = _dns_cycle(config_path, state_path, fleet_path, apply=True, force=force)
    _print_plan(result.plan.summary(), as_json, messages=result.messages)


@dns_group.command(name="show")
@config_option("/etc/mirrorfleet/dns.toml")
@json_option
def dns_show(config_path: Path, as_json: bool) -> None:
    """The records mirrorfleet owns in the zone now (by zone transfer)."""
    from mirrorfleet.config import load_dns_config
    from mirrorfleet.publish import backend_for, owned

    live = backend_for(load_dns_config(config_path)).read_live()
    rows = [asdict(r) for r in live if owned(r.name, r.rdtype)]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        for value in row["values"]:
            out.print(f"{row['name']:40} {row['ttl']:>6} {row['rdtype']:5} {value}")


def _print_plan(summary: dict[str, Any], as_json: bool, messages: int | None) -> None:
    if as_json:
        emit_json({**summary, **({} if messages is None else {"messages": messages})})
        return
    changes = [(verb, name) for verb in ("create", "update", "delete") for name in summary[verb]]
    if not changes:
        out.print("no changes")
    for verb, name in changes:
        out.print(f"{verb:7} {name}")
    if messages is not None:
        out.print(f"sent {messages} update message(s)")


def _print_hosts(rows: list[dict[str, Any]]) -> None:
    table = Table(box=None)
    for column in ("host", "address", "groups", "state"):
        table.add_column(column)
    colors = {"running": "green", "degraded": "yellow", "planned": "cyan"}
    for row in rows:
        state = row["state"]
        table.add_row(
            row["name"],
            row["address"],
            ",".join(row["groups"]),
            f"[{colors.get(state, 'red')}]{state}[/]",
        )
    out.print(table)


def _add_client_commands() -> None:
    from mirrorfleet.client.commands import COMMANDS

    for command in COMMANDS:
        cli.add_command(command)


_add_client_commands()


def main() -> None:
    try:
        cli(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except MirrorfleetError as exc:
        err.print(f"[red]error:[/] {exc}")
        sys.exit(1)
