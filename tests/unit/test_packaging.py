"""The wheel the install role ships must hold every package and data file: hosts
install it with --no-deps from this build, so a forgotten subpackage only shows up
as a daemon that dies on a real host. And the lab template must hold every Debian
package any role installs, since lab hosts have no internet. The control node's side:
`mirrorfleet verify` runs the checks shipped in the wheel, without a checkout."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from xml.etree import ElementTree

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


def test_the_host_wheel_has_no_test_harness_and_no_checks(tmp_path: Path) -> None:
    """Built exactly as roles/install builds it: every runtime package, no testing/ and
    no checks/ (a host never checks itself; the control node runs them)."""
    import zipfile

    from mirrorfleet_roles.install import build_host_wheel

    left_out = ("mirrorfleet.testing", "mirrorfleet.checks")
    wheel = build_host_wheel(ROOT, tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for package in left_out:
        path = package.replace(".", "/")
        assert [n for n in names if n.startswith(f"{path}/")] == [], f"{package} is on hosts"
    for package in SETUPTOOLS["packages"]:
        if package not in left_out and package.startswith("mirrorfleet."):
            path = package.replace(".", "/")
            assert f"{path}/__init__.py" in names, f"{package} is missing from the host wheel"
    assert "mirrorfleet/zone/providers/route53.py" in names


# -- the package a control node installs ---------------------------------------------

# Nothing answers on port 1 of the loopback: ssh fails at once, without the network.
UNREACHABLE = """mirrors = [("mirror1", {"ssh_hostname": "127.0.0.1", "ssh_port": 1})]\n"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the project's whole wheel installed, as `pip install .` would,
    and no checkout anywhere on its path.

    Its dependencies (pyinfra, pytest, testinfra) come from this venv's site-packages
    through a .pth file, so none is downloaded (only the wheel's build backend is,
    when this venv's setuptools cannot build wheels itself). A plain .pth line adds a
    folder without running that folder's own .pth files, so this venv's editable
    mirrorfleet stays out of sight."""
    from mirrorfleet_roles.install import build_project_wheel

    tmp = tmp_path_factory.mktemp("installed")
    wheel = build_project_wheel(ROOT, tmp / "dist")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # installed before the .pth exists, so pip sees no mirrorfleet already there
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    install = [*pip, "--python", str(venv / "bin/python"), "install", "--no-deps", "--no-index"]
    subprocess.run([*install, str(wheel)], check=True)
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run(venv / "bin/python", "-c", code).stdout.strip())
    (site / "control-node-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run outside this checkout: no PYTHONPATH, no active venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_verify_runs_the_checks_from_an_installed_package(installed: Path, tmp_path: Path) -> None:
    """`mirrorfleet verify` from a plain install, in a folder with no checkout: pytest
    runs the checks shipped in the wheel, and what fails is the host, not the setup."""
    code = "import mirrorfleet.checks as c; print(c.__file__)"
    where = _run(installed / "bin/python", "-c", code)
    checks = Path(where.stdout.strip()).parent
    assert checks.is_relative_to(installed), where.stdout + where.stderr

    mirrorfleet = installed / "bin/mirrorfleet"
    helped = _run(mirrorfleet, "verify", "--help", cwd=tmp_path)
    assert helped.returncode == 0 and "INVENTORY" in helped.stdout, helped.stderr

    (tmp_path / "fleet.py").write_text(UNREACHABLE)
    junit = tmp_path / "verify.xml"
    only = "test_service_user_is_unprivileged"
    proc = _run(mirrorfleet, "verify", "fleet.py", "-k", only, "--junit", junit, cwd=tmp_path)
    # 1 is also how the CLI exits on a UserError: the lines below tell pytest's failure
    assert proc.returncode == 1, proc.stdout + proc.stderr
    check = os.path.relpath(checks / "test_common.py", tmp_path)
    assert f"FAILED {check}::{only}[ssh://mirror1]" in proc.stdout, proc.stdout
    assert "127.0.0.1 port 1: Connection refused" in proc.stdout, proc.stdout
    assert "1 failed" in proc.stdout.splitlines()[-1], proc.stdout
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("mirrorfleet.checks.test_common", f"{only}[ssh://mirror1]")
    ]
