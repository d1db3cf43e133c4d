"""`mirrorfleet verify`: check every host of an inventory with the role checks (testinfra).

The checks are the package mirrorfleet.checks, so verify works wherever
`mirrorfleet[deploy]` is installed, not only from a checkout.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import click

from mirrorfleet.errors import UserError, missing_extra

CHECKS = "mirrorfleet.checks"


def checks_folder() -> Path:
    """The folder of the installed checks, found without importing them.

    pytest is given the folder, not `--pyargs mirrorfleet.checks`: it loads the
    conftest that defines `--inventory` only from the paths on its command line, and
    a dotted name is not one."""
    spec = importlib.util.find_spec(CHECKS)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the host checks ({CHECKS}) are not installed here: verify runs from a "
            "control node, pip install 'mirrorfleet[deploy]'"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def pytest_argv(inventory: str) -> list[str]:
    """pytest on the packaged checks against `inventory`: the same run from a checkout
    or an installed package, whatever the current folder.

    No ini file is read (a project's pytest config found above the current folder
    would change the run), no conftest from above the package is loaded, and the
    rootdir is the folder that holds the `mirrorfleet` package, so JUnit classnames
    read `mirrorfleet.checks.test_dns` wherever it is installed. The current folder is
    left alone: inventories may name SSH keys relative to it.
    """
    folder = checks_folder()
    return [
        sys.executable,
        "-m",
        "pytest",
        str(folder),
        "--inventory",
        inventory,
        "--config-file",
        os.devnull,
        "--rootdir",
        str(folder.parents[1]),
        "--confcutdir",
        str(folder),
        "-p",
        "no:cacheprovider",  # nothing written next to an installed package
    ]


@click.command()
@click.argument("inventory_path", metavar="INVENTORY", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--junit", "junit", type=click.Path(dir_okay=False), help="Also write JUnit XML here."
)
@click.option("-k", "keyword", help="Only checks matching this pytest -k expression.")
def verify(inventory_path: str, junit: str | None, keyword: str | None) -> None:
    """Check every host of a pyinfra inventory with the role checks (testinfra)."""
    import subprocess

    try:  # the checks run on pyinfra's inventory through testinfra: the deploy extra
        import pyinfra  # noqa: F401
        import pytest  # noqa: F401
        import testinfra  # noqa: F401
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "deploy") from None
    argv = pytest_argv(inventory_path)
    argv += ["-q", "-rfE", "--tb=short", "--no-header"]
    if junit:
        argv += ["--junitxml", junit]
    if keyword:
        argv += ["-k", keyword]
    sys.exit(subprocess.run(argv, check=False).returncode)
