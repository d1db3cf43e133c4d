"""`mirrorfleet origin`: run on the origin host (an origin publish, an import)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from mirrorfleet.cli.options import config_option, json_option
from mirrorfleet.cli.output import emit_json, err, out
from mirrorfleet.errors import UserError

if TYPE_CHECKING:
    from mirrorfleet.origin.changelist import ChangeList


@click.group()
def origin() -> None:
    """Commands run on the origin host."""


@origin.command(name="publish")
@config_option("/etc/mirrorfleet/origin.toml")
@click.option(
    "--changed",
    "changed_file",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="What was written, one a line: project names, paths (tree-relative or "
    "absolute inside the tree; bandersnatch's diff-file as it is). '-': stdin. "
    "Without it, changed project pages are found by stat.",
)
@click.option("--full", is_flag=True, help="Hash every page (an audit); mirrors sync all.")
@click.option("--dry-run", is_flag=True, help="Say what would be recorded; write nothing.")
@click.option("--force", is_flag=True, help="Publish a new serial even if nothing changed.")
@click.option("--no-ping", is_flag=True, help="Do not ping mirrors (they catch up by timer).")
@json_option
def origin_publish(
    config_path: Path,
    changed_file: Path | None,
    full: bool,
    dry_run: bool,
    force: bool,
    no_ping: bool,
    as_json: bool,
) -> None:
    """Sign a new serial for what landed in the tree, then ping the mirrors."""
    from mirrorfleet.config import load_origin_config
    from mirrorfleet.origin.publish import publish, result_dict

    if changed_file is not None and full:
        raise click.UsageError("--changed and --full exclude each other")
    config = load_origin_config(config_path)
    changed = None if changed_file is None else _read_changed(changed_file, config.tree)
    result = publish(
        config,
        force=force,
        ping=not (no_ping or dry_run),
        progress=lambda m: err.print(m, markup=False),
        changed=changed,
        full=full,
        dry_run=dry_run,
    )
    if as_json:
        emit_json(result_dict(result))
        return
    if result.serial == result.previous:
        out.print(f"nothing changed: still serial {result.serial} ({result.mode})")
        return
    out.print(
        f"{'would publish' if result.dry_run else 'published'} serial {result.serial} "
        f"({len(result.changed)} changed, {len(result.removed)} removed) "
        f"in {result.seconds:.2f}s",
        markup=False,
    )
    if result.complete:
        out.print(
            f"  record ({result.mode}): {result.written} written, {result.removed_paths} removed"
        )
    else:
        out.print(f"  record ({result.mode}): incomplete, mirrors sync everything")
    for url, status in result.pings.items():
        out.print(f"  ping {url}: {status or 'unreachable'}")


@origin.command(name="heartbeat")
@config_option("/etc/mirrorfleet/origin.toml")
@click.option("--dry-run", is_flag=True, help="Say what would be signed; write nothing.")
@click.option("--no-ping", is_flag=True, help="Do not ping mirrors (they pick it up by timer).")
@click.option(
    "--if-published",
    is_flag=True,
    help="Before the first publish, say so and succeed (the timer's way) instead of failing.",
)
@json_option
def origin_heartbeat(
    config_path: Path, dry_run: bool, no_ping: bool, if_published: bool, as_json: bool
) -> None:
    """Sign the current stamp again (same serial, new expiry), then ping the mirrors.

    Run by mirrorfleet-heartbeat.timer every `heartbeat` seconds: an idle fleet stays
    provably fresh, and a mirror or DNS answer that stops receiving it expires."""
    from dataclasses import asdict

    from mirrorfleet.config import load_origin_config
    from mirrorfleet.origin.heartbeat import heartbeat
    from mirrorfleet.tree.stamp import STAMP_PATH

    config = load_origin_config(config_path)
    if if_published and not (config.tree / STAMP_PATH).exists():
        if as_json:
            emit_json({"serial": None, "published": False})
        else:
            out.print(f"{config.tree} has no stamp yet: nothing to keep fresh")
        return
    result = heartbeat(config, ping=not (no_ping or dry_run), dry_run=dry_run)
    if as_json:
        emit_json(asdict(result))
        return
    verb = "would renew" if dry_run else "renewed"
    out.print(
        f"{verb} serial {result.serial}: expires in "
        f"{result.expires - result.ts}s (was {result.previous_expires - result.ts:+d}s)"
    )
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False)
    for url, status in result.pings.items():
        out.print(f"  ping {url}: {status or 'unreachable'}")


def _read_changed(path: Path, tree: Path) -> ChangeList:
    from mirrorfleet.origin.changelist import read_change_list

    if str(path) == "-":
        stream = click.get_text_stream("stdin", errors="surrogateescape")
        return read_change_list(stream, tree, source="<stdin>")
    try:
        with path.open(encoding="utf-8", errors="surrogateescape") as lines:
            return read_change_list(lines, tree, source=str(path))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None


@origin.command(name="import")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@config_option("/etc/mirrorfleet/origin.toml")
@click.option(
    "--list-changed",
    is_flag=True,
    help="Print the tree-relative paths written, one a line (for `publish --changed -`).",
)
@json_option
def origin_import(source: Path, config_path: Path, list_changed: bool, as_json: bool) -> None:
    """Bring an existing tree (e.g. bandersnatch's) into the origin's tree.

    Run `mirrorfleet origin publish` afterwards to give it a serial.
    """
    from mirrorfleet.cli.content import print_paths
    from mirrorfleet.config import load_origin_config
    from mirrorfleet.content.importer import import_tree

    config = load_origin_config(config_path)
    written: list[Path] = []
    try:
        count = import_tree(source, config.tree, written)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if list_changed:
        print_paths(config.tree, written)
    elif as_json:
        emit_json({"imported": count, "written": len(written), "tree": str(config.tree)})
    else:
        out.print(
            f"imported {count} files into {config.tree}; now run `mirrorfleet origin publish`"
        )
