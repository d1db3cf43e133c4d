"""The wheel the install role ships must hold every package and data file: hosts
install it with --no-deps from this build, so a forgotten subpackage only shows up
as a daemon that dies on a real host."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _packages(base: Path, name: str) -> set[str]:
    return {
        ".".join((name, *init.parent.relative_to(base).parts))
        for init in base.rglob("__init__.py")
        if "__pycache__" not in init.parts
    }


def test_every_package_is_listed() -> None:
    found = _packages(ROOT / "src/mirrorfleet", "mirrorfleet") | _packages(
        ROOT / "roles", "mirrorfleet_roles"
    )
    assert found - set(SETUPTOOLS["packages"]) == set()


def test_every_role_file_is_package_data() -> None:
    patterns = SETUPTOOLS["package-data"]["mirrorfleet_roles"]
    shipped = {p for pattern in patterns for p in (ROOT / "roles").glob(pattern) if p.is_file()}
    wanted = {
        p
        for folder in ("templates", "files")
        for p in (ROOT / "roles").glob(f"*/{folder}/**/*")
        if p.is_file()
    }
    assert wanted - shipped == set()
