"""`mirrorfleet dns`: the fleet's records in DNS (plan, apply: a zone update; show)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mirrorfleet.cli.options import F, config_option, json_option
from mirrorfleet.cli.output import emit_json, out
from mirrorfleet.errors import UserError

if TYPE_CHECKING:
    from mirrorfleet.zone.update import ZoneUpdate


@click.group(name="dns")
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


def _zone_update(
    config_path: Path, state_path: Path | None, fleet_path: Path | None, apply: bool, force: bool
) -> ZoneUpdate:
    from mirrorfleet.config import load_dns_config
    from mirrorfleet.probe.observe import load_fleet_config, probe_fleet
    from mirrorfleet.zone.update import update_zone

    if (state_path is None) == (fleet_path is None):
        raise click.UsageError("give exactly one of --state FILE or --fleet FILE")
    config = load_dns_config(config_path)
    if fleet_path is not None:
        state = probe_fleet(load_fleet_config(fleet_path))
    else:
        try:
            state = json.loads(state_path.read_text())  # type: ignore[union-attr]
        except ValueError as exc:
            raise UserError(f"{state_path} is not JSON: {exc}") from None
    return update_zone(config, state, apply=apply, force=force)


@dns_group.command(name="plan")
@config_option("/etc/mirrorfleet/dns.toml")
@state_options
@json_option
def dns_plan(
    config_path: Path, state_path: Path | None, fleet_path: Path | None, as_json: bool
) -> None:
    """Show what apply would change; send nothing."""
    result = _zone_update(config_path, state_path, fleet_path, apply=False, force=False)
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
    result = _zone_update(config_path, state_path, fleet_path, apply=True, force=force)
    _print_plan(result.plan.summary(), as_json, messages=result.messages)


@dns_group.command(name="show")
@config_option("/etc/mirrorfleet/dns.toml")
@json_option
def dns_show(config_path: Path, as_json: bool) -> None:
    """The records mirrorfleet owns in the zone now (by zone transfer)."""
    from mirrorfleet.config import load_dns_config
    from mirrorfleet.zone.plan import owned
    from mirrorfleet.zone.providers import provider_for

    live = provider_for(load_dns_config(config_path)).read_live()
    rows = [asdict(r) for r in live if owned(r.name, r.rdtype)]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        for value in row["values"]:
            out.print(f"{row['name']:40} {row['ttl']:>6} {row['rdtype']:5} {value}", markup=False)


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
