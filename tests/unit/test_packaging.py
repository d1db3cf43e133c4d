"""The wheel the install role ships must hold every package and data file: hosts
install it with --no-deps from this build, so a forgotten subpackage only shows up
as a daemon that dies on a real host. And the lab template must hold every Debian
package any role installs, since lab hosts have no internet."""

from __future__ import annotations

import ast
import importlib
import tomllib
from pathlib import Path

import pytest

from mirrorfleet.lab import template

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


# -- every Debian package a role installs is in the lab template ---------------------

ROLES = sorted(p.parent.name for p in (ROOT / "roles").glob("*/__init__.py"))


def _apt_packages(role: str) -> list[str]:
    """Every package name any apt.packages call in the role passes, resolved the way
    the call resolves it: a literal list, a module constant, or host.data.X read from
    the role's DEFAULTS. Any other form fails here rather than being skipped."""
    module = importlib.import_module(f"mirrorfleet_roles.{role}")
    source = (ROOT / "roles" / role / "__init__.py").read_text()
    found: list[str] = []
    for call in ast.walk(ast.parse(source)):
        if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "apt.packages"):
            continue
        arg = next((k.value for k in call.keywords if k.arg == "packages"), None)
        if arg is None and call.args:
            arg = call.args[0]
        assert arg is not None, f"roles/{role}: apt.packages without packages (line {call.lineno})"
        if isinstance(arg, ast.List | ast.Tuple):
            found += [ast.literal_eval(item) for item in arg.elts]
        elif isinstance(arg, ast.Name):
            found += getattr(module, arg.id)
        elif isinstance(arg, ast.Attribute) and ast.unparse(arg.value) == "host.data":
            found += module.DEFAULTS[arg.attr]
        else:
            pytest.fail(f"roles/{role} line {call.lineno}: cannot read {ast.unparse(arg)}")
    return found


def test_every_role_is_read() -> None:
    """A test of the test: the scan finds the roles' own installs, not only common's."""
    assert {"common", "dns", "install", "monitor", "serve_tree"} <= set(ROLES)
    assert "bind9" in _apt_packages("dns")
    assert {"nginx", "python3-boto3"} <= set(_apt_packages("monitor"))
    assert "systemd-timesyncd" in _apt_packages("common")  # a module constant
    assert "python3-dnspython" in _apt_packages("install")  # host.data from DEFAULTS


@pytest.mark.parametrize("role", ROLES)
def test_every_role_package_is_in_the_lab_template(role: str) -> None:
    """Lab hosts have no internet: what any role installs must already be there."""
    assert set(_apt_packages(role)) - set(template.PACKAGES) == set()


# -- the wheel hosts install ---------------------------------------------------------


def test_the_host_wheel_has_no_test_harness(tmp_path: Path) -> None:
    """Built exactly as roles/install builds it: every runtime package, no testing/."""
    import zipfile

    from mirrorfleet_roles.install import build_host_wheel

    wheel = build_host_wheel(ROOT, tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert [n for n in names if n.startswith("mirrorfleet/testing/")] == []
    for package in SETUPTOOLS["packages"]:
        if package != "mirrorfleet.testing" and package.startswith("mirrorfleet."):
            path = package.replace(".", "/")
            assert f"{path}/__init__.py" in names, f"{package} is missing from the host wheel"
    assert "mirrorfleet/zone/providers/route53.py" in names
