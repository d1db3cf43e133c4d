"""`mirrorfleet demo-content`: an installable demo index, for the lab and the tests."""

from __future__ import annotations

from pathlib import Path

import click

from mirrorfleet.cli.options import json_option
from mirrorfleet.cli.output import emit_json, out
from mirrorfleet.errors import UserError


@click.command(name="demo-content")
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
        raise UserError(str(exc)) from None
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
