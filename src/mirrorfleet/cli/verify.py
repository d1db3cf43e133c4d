"""`mirrorfleet verify`: check every host of an inventory with the role tests (testinfra)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mirrorfleet.errors import UserError, missing_extra

# src/mirrorfleet/cli/verify.py -> the checkout's tests/infra
INFRA_TESTS = Path(__file__).resolve().parents[3] / "tests" / "infra"


@click.command()
@click.argument("inventory_path", metavar="INVENTORY", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--junit", "junit", type=click.Path(dir_okay=False), help="Also write JUnit XML here."
)
@click.option("-k", "keyword", help="Only checks matching this pytest -k expression.")
def verify(inventory_path: str, junit: str | None, keyword: str | None) -> None:
    """Check every host of a pyinfra inventory with the role test suite (testinfra)."""
    import subprocess

    try:  # the checks run on pyinfra's inventory through testinfra: the deploy extra
        import pyinfra  # noqa: F401
        import testinfra  # noqa: F401
    except ModuleNotFoundError as exc:
        raise missing_extra(exc, "deploy") from None
    if not (INFRA_TESTS / "conftest.py").exists():
        raise UserError(
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
