"""`mirrorfleet lab`: a local lab of real systemd hosts for trying and testing the fleet."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from mirrorfleet.cli.options import json_option
from mirrorfleet.cli.output import emit_json, err, out, progress, table
from mirrorfleet.errors import UserError


@click.group()
def lab() -> None:
    """A local lab of real systemd hosts (systemd-nspawn), for trying and testing the fleet.

    Needs root. Hosts, addresses and keys are recorded in a state file that
    inventories/lab.py reads, so `pyinfra inventories/lab.py deploy.py` just works.
    """


def _lab_name(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from mirrorfleet.lab.state import lab_name

    try:
        return lab_name(value)
    except UserError as exc:
        raise click.BadParameter(str(exc)) from None


name_option = click.option(
    "--name",
    envvar="MIRRORFLEET_LAB",
    default="lab",
    show_default=True,
    callback=_lab_name,
    help="Lab name (1-4 chars); lets several labs share a machine. Env: MIRRORFLEET_LAB.",
)


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
        raise UserError(f"leftovers after down: {asdict(remaining)}")


@lab.command()
@name_option
@json_option
def status(name: str, as_json: bool) -> None:
    """Show each host: address, groups, and what systemd says.

    Exits 1 with one line on stderr when the lab is not up: no lab of that name, or
    a host of it not running (its rows are shown first).
    """
    from mirrorfleet.lab.lifecycle import status as lab_status

    rows = lab_status(name)
    if not rows:
        raise UserError(f"lab {name!r} is not up: run `mirrorfleet lab up` first")
    if as_json:
        emit_json(rows)
    else:
        _print_hosts(rows)
    stopped = [r["name"] for r in rows if r["pid"] is None]
    if stopped:
        raise UserError(f"lab {name!r} is not up: {', '.join(stopped)} not running")


@lab.command()
@click.option("--no-add", is_flag=True, help="Build it only; do not `vagrant box add` it.")
@json_option
def box(no_add: bool, as_json: bool) -> None:
    """Build the Vagrant box (libvirt) from the lab's template, once, and add it to
    Vagrant as mirrorfleet/bookworm, which the Vagrantfile then uses."""
    from mirrorfleet.lab.system import require_root, require_tools
    from mirrorfleet.lab.vmbox import BOX_NAME, add_box, ensure_box, write_tcg_wrapper

    require_root("building the Vagrant box")
    require_tools(["debootstrap", "systemd-nspawn", "mkfs.ext4", "qemu-img", "vagrant"])
    say = (lambda _m: None) if as_json else (lambda m: progress("box", m))
    path = ensure_box(say)
    wrapper = write_tcg_wrapper()
    added = False if no_add else add_box(path)
    result = {
        "box": BOX_NAME,
        "file": str(path),
        "bytes": path.stat().st_size,
        "added": added,
        "tcg_wrapper": str(wrapper),
    }
    if as_json:
        emit_json(result)
    else:
        state = "added to Vagrant" if added else ("not added" if no_add else "already in Vagrant")
        out.print(f"{BOX_NAME}: {path} ({path.stat().st_size / 1e6:.0f} MB), {state}")


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


def _print_hosts(rows: list[dict[str, Any]]) -> None:
    listing = table("host", "address", "groups", "state")
    colors = {"running": "green", "degraded": "yellow", "planned": "cyan"}
    for row in rows:
        state = row["state"]
        listing.add_row(
            row["name"],
            row["address"],
            ",".join(row["groups"]),
            f"[{colors.get(state, 'red')}]{state}[/]",
        )
    out.print(listing)
