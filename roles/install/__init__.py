"""Install mirrorfleet itself on a host that has no internet.

The wheel is built once per run on the control node from this checkout and
installed with `--no-deps` into a venv that sees Debian's python3-* packages
(cryptography, click, rich, prometheus-client, dnspython), which the common role
and the lab template provide.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.operations import apt, files, server

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILD_IGNORE = {"tests", "bench", "build", "dist", "docs", "inventories", "__pycache__"}
DEFAULTS = {
    "install_prefix": "/opt/mirrorfleet",
    # Debian packages the installed mirrorfleet imports (all in the lab template).
    "install_packages": [
        "python3-venv",
        "python3-cryptography",
        "python3-click",
        "python3-rich",
        "python3-prometheus-client",
        "python3-dnspython",
    ],
}


# Left out of the host wheel: the test harness (loopback servers, a moto launcher that
# patches moto, a headless browser driver) is for tests and benchmarks only, and the
# checks of deployed hosts run from the control node (`mirrorfleet verify`), never on
# a host.
HOST_EXCLUDED_PACKAGES = ("mirrorfleet.testing", "mirrorfleet.checks")


@cache
def build_wheel() -> Path:
    """Build (or reuse) the wheel for the current source tree; cached by content hash."""
    if not (PROJECT_ROOT / "pyproject.toml").exists():
        raise DeployError(f"{PROJECT_ROOT} is not a mirrorfleet checkout: install it editable")
    digest = hashlib.sha256()
    for path in sorted(
        p
        for base in ("src", "roles")
        for p in (PROJECT_ROOT / base).rglob("*")
        if p.is_file()
        and not any(part in BUILD_IGNORE or part.endswith(".egg-info") for part in p.parts)
    ):
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + path.read_bytes())
    digest.update((PROJECT_ROOT / "pyproject.toml").read_bytes())
    out = Path.home() / ".cache" / "mirrorfleet" / "wheels" / digest.hexdigest()[:16]
    wheels = sorted(out.glob("mirrorfleet-*.whl"))
    if wheels:
        return wheels[0]
    return build_host_wheel(PROJECT_ROOT, out)


def build_host_wheel(project: Path, out: Path) -> Path:
    """Build the wheel hosts install into `out`: the package without its test harness
    and without the checks of deployed hosts."""
    return build_project_wheel(project, out, leave_out=HOST_EXCLUDED_PACKAGES)


def build_project_wheel(project: Path, out: Path, leave_out: Sequence[str] = ()) -> Path:
    """Build mirrorfleet's wheel from the checkout `project` into `out`, without the
    subpackages named in `leave_out`. Offline when this Python can build it
    (setuptools with bdist_wheel); else pip fetches the build backend, as `pip install`
    would."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mirrorfleet-wheel-") as tmp:
        # build from a copy: setuptools writes build/ and egg-info next to the source
        source = Path(tmp) / "src"
        shutil.copytree(
            project,
            source,
            ignore=lambda _dir, names: [
                n
                for n in names
                if n in BUILD_IGNORE or n.startswith(".") or n.endswith(".egg-info")
            ],
        )
        for package in leave_out:
            _leave_out(source, package)
        argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out)]
        proc = subprocess.run([*argv, "--no-build-isolation", str(source)], capture_output=True)
        if proc.returncode != 0:  # no setuptools here: let pip fetch the build backend
            proc = subprocess.run([*argv, str(source)], capture_output=True, text=True)
    wheels = sorted(out.glob("mirrorfleet-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise DeployError(f"building the mirrorfleet wheel failed: {proc.stderr!r}")
    return wheels[0]


def _leave_out(source: Path, package: str) -> None:
    """Delete a subpackage from the build copy and from its pyproject's package list.

    pyproject lists packages one per line; a list that no longer names the package is
    an error here, not a wheel that quietly ships it again."""
    pyproject = source / "pyproject.toml"
    entry = f'    "{package}",\n'
    text = pyproject.read_text()
    if entry not in text:
        raise DeployError(f"pyproject.toml does not list {package}: cannot leave it out")
    pyproject.write_text(text.replace(entry, ""))
    shutil.rmtree(source / "src" / Path(*package.split(".")))


@deploy("mirrorfleet install", data_defaults=DEFAULTS)
def apply() -> OperationMeta:
    """Install the wheel; returns the operation that (re)installs it, so the calling
    role restarts its services when the code changed."""
    prefix = host.data.install_prefix
    wheel = build_wheel()
    apt.packages(
        name="Install the Python libraries mirrorfleet uses",
        packages=host.data.install_packages,
        no_recommends=True,
    )
    files.directory(name="Create the install prefix", path=f"{prefix}/wheels", mode="0755")
    upload = files.put(
        name="Upload the mirrorfleet wheel",
        src=str(wheel),
        dest=f"{prefix}/wheels/{wheel.name}",
        mode="0644",
    )
    venv_missing = not host.get_fact(File, f"{prefix}/venv/pyvenv.cfg")
    server.shell(
        name="Create the venv (sees Debian's python3 packages)",
        commands=[f"python3 -m venv --system-site-packages {prefix}/venv"],
        _if=lambda: venv_missing,
    )
    installed = server.shell(
        name="Install the wheel",
        commands=[
            f"{prefix}/venv/bin/pip install -q --no-deps --no-index --force-reinstall "
            f"{prefix}/wheels/{wheel.name}"
        ],
        _if=lambda: venv_missing or upload.did_change(),
    )
    files.link(
        name="Link the mirrorfleet command",
        path="/usr/local/bin/mirrorfleet",
        target=f"{prefix}/venv/bin/mirrorfleet",
    )
    return installed
