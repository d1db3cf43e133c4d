"""`mirrorfleet origin`: run on the origin host (an origin publish, an import)."""

from __future__ import annotations

from pathlib import Path

import click

from mirrorfleet.cli.options import config_option, json_option
from mirrorfleet.cli.output import emit_json, err, out
from mirrorfleet.errors import UserError


@click.group()
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
    from mirrorfleet.origin.publish import publish, result_dict

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
        raise UserError(str(exc)) from None
    if as_json:
        emit_json({"imported": count, "tree": str(config.tree)})
    else:
        out.print(
            f"imported {count} files into {config.tree}; now run `mirrorfleet origin publish`"
        )
