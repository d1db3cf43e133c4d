"""`mirrorfleet keys`: create the fleet's secrets."""

from __future__ import annotations

from pathlib import Path

import click

from mirrorfleet.cli.options import json_option
from mirrorfleet.cli.output import emit_json, out


@click.group()
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
    from mirrorfleet.tree.keys import SecretsDir, init_secrets, parse_public_key

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
