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
@click.option(
    "--list-changed",
    is_flag=True,
    help="Print the tree-relative paths written, one a line (for `origin publish --changed -`).",
)
@json_option
def demo_content(
    tree: Path,
    projects: int,
    versions: int,
    payload: int,
    release: str | None,
    list_changed: bool,
    as_json: bool,
) -> None:
    """Write a PEP 503/691 index of installable demo wheels into TREE."""

    tree.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        result = _demo_content(tree, projects, versions, payload, release, written)
    except (ValueError, FileExistsError) as exc:
        raise UserError(str(exc)) from None
    if list_changed:
        print_paths(tree, written)
    elif as_json:
        emit_json({**result, "written": len(written)})
    else:
        out.print(", ".join(f"{k}: {v}" for k, v in result.items()))


def print_paths(tree: Path, paths: list[Path]) -> None:
    """One tree-relative POSIX path a line: what `origin publish --changed` reads."""
    click.echo("".join(f"{path.relative_to(tree).as_posix()}\n" for path in paths), nl=False)


def _demo_content(
    tree: Path,
    projects: int,
    versions: int,
    payload: int,
    release: str | None,
    written: list[Path],
) -> dict[str, object]:
    from mirrorfleet.content import pypi

    if release:
        project, sep, version = release.partition("==")
        if not sep or not project or not version:
            raise click.BadParameter("use PROJECT==VERSION", param_hint="--add")
        wheel = pypi.add_release(tree, project, version, payload_bytes=payload, written=written)
        return {"added": str(wheel.relative_to(tree))}
    names = pypi.generate(tree, projects, versions=versions, payload_bytes=payload, written=written)
    return {"projects": len(names), "versions": versions, "tree": str(tree)}
