"""Run the role checks against the hosts of any pyinfra inventory.

    mirrorfleet verify inventories/prod.py
    mirrorfleet verify inventories/lab.py --junit verify.xml -k dns

(`mirrorfleet verify` runs pytest on this package's folder, see cli/verify.py; plain
`pytest src/mirrorfleet/checks --inventory PATH` works too.)

Each module names the inventory group it checks (INVENTORY_GROUP, or a tuple of
groups for a role several groups run); its `host` fixture is parametrized over
those hosts. SSH settings come from the
inventory's host data, written to an ssh_config for testinfra's ssh backend.
`--hosts` and `--ssh-config` keep their usual testinfra meaning and win when given.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest

from mirrorfleet.config import TLS_DEFAULT
from mirrorfleet.control.inventory import host_part, load_inventory, public_name, ssh_config_for

INVENTORY_KEY = pytest.StashKey()
WORKDIR_KEY = pytest.StashKey[Path]()
# `systemd-analyze security` calls 4.0 and below "OK" (or better); every
# mirrorfleet unit must stay there (roles/fleet.py, sandbox()).
MAX_EXPOSURE = 4.0
OVERALL_EXPOSURE_RE = re.compile(r"Overall exposure level for \S+: ([0-9.]+) (\w+)")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--inventory",
        default=os.environ.get("MIRRORFLEET_INVENTORY"),
        help="pyinfra inventory file whose hosts to check (default: $MIRRORFLEET_INVENTORY)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.option.hosts is not None:
        return  # plain testinfra usage
    if not config.option.inventory:
        # installed, the checks know no checkout whose inventories/ to default to
        raise pytest.UsageError("the checks need --inventory PATH (or --hosts)")
    inventory = load_inventory(config.option.inventory)
    config.stash[INVENTORY_KEY] = inventory
    if config.option.ssh_config is None:
        workdir = Path(tempfile.mkdtemp(prefix="mirrorfleet-infra-"))
        config.stash[WORKDIR_KEY] = workdir
        path = workdir / "ssh_config"
        # one multiplexed connection per host instead of a handshake per check
        multiplex = f"Host *\n    ControlPath {workdir}/cm-%C\n"
        path.write_text(ssh_config_for(inventory) + "\n" + multiplex)
        config.option.ssh_config = str(path)
    if config.option.connection is None:
        config.option.connection = "ssh"
    if any(host.data.get("_sudo") for host in inventory):
        # the inventory logs in as a user who works through sudo (Vagrant's `vagrant`):
        # the checks then read and run as root, as on hosts reached as root
        config.option.sudo = True


def pytest_unconfigure(config: pytest.Config) -> None:
    workdir = config.stash.get(WORKDIR_KEY, None)
    if workdir is None:
        return
    for host in config.stash[INVENTORY_KEY]:  # close the ssh masters we opened
        subprocess.run(
            ["ssh", "-F", str(workdir / "ssh_config"), "-O", "exit", host_part(host.name)],
            capture_output=True,
            timeout=10,
        )
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Point testinfra at the module's inventory group before its own hook runs."""
    inventory = metafunc.config.stash.get(INVENTORY_KEY, None)
    if inventory is None or "_testinfra_host" not in metafunc.fixturenames:
        return
    groups = getattr(metafunc.module, "INVENTORY_GROUP", "all")
    # an inventory without the group (a fleet with no monitor yet) has nothing to check;
    # a tuple of groups checks each host of any of them once (the serve_tree role)
    if groups == "all":
        hosts = list(inventory)
    else:
        names = (groups,) if isinstance(groups, str) else groups
        hosts = list({h.name: h for g in names for h in inventory.get_group(g, [])}.values())
    metafunc.module.testinfra_hosts = [f"ssh://{host_part(h.name)}" for h in hosts]


@pytest.fixture(scope="module")
def inventory_host(host, request: pytest.FixtureRequest):
    """The pyinfra inventory entry (name, groups, data) behind the testinfra host."""
    inventory = request.config.stash.get(INVENTORY_KEY, None)
    if inventory is None:
        pytest.skip("needs --inventory (host data is not known with --hosts)")
    alias = host.backend.hostname
    return next(h for h in inventory if host_part(h.name) == alias)


@pytest.fixture(scope="module")
def inventory(request: pytest.FixtureRequest):
    """The whole pyinfra inventory, for checks that compare a host with its fleet."""
    found = request.config.stash.get(INVENTORY_KEY, None)
    if found is None:
        pytest.skip("needs --inventory (the fleet is not known with --hosts)")
    return found


class Exposure(NamedTuple):
    """A unit's overall `systemd-analyze security` exposure, and the most it may be."""

    unit: str
    level: float
    verdict: str
    limit: float = MAX_EXPOSURE

    def __str__(self) -> str:
        return f"{self.unit}: exposure {self.level} {self.verdict} (limit {self.limit})"


@pytest.fixture(scope="module")
def unit_exposure(host) -> Callable[[str], Exposure]:
    """`systemd-analyze security UNIT` on the host, parsed."""

    def exposure(unit: str) -> Exposure:
        out = host.check_output(
            f"SYSTEMD_COLORS=0 systemd-analyze security --no-pager {shlex.quote(unit)}"
        )
        found = OVERALL_EXPOSURE_RE.search(out)
        assert found, f"no overall exposure in systemd-analyze security {unit}:\n{out}"
        return Exposure(unit, float(found.group(1)), found.group(2))

    return exposure


class Site(NamedTuple):
    """How a check on the host reads the host's own nginx, as its clients do: by its
    public name over HTTPS (the name pinned to this host, the certificate checked by
    the host's trust store), or plain HTTP where the inventory keeps it."""

    curl: str  # curl with the name pinned to loopback
    url: str  # the site's base URL, no trailing slash
    name: str
    tls: str  # the host's `tls` mode


@pytest.fixture(scope="module")
def site(inventory_host) -> Site:
    name = public_name(inventory_host.name, inventory_host.data)
    mode = inventory_host.data.get("tls") or TLS_DEFAULT
    if mode == "off":
        return Site("curl", "http://localhost", name, mode)
    port = 443
    if "monitor" in inventory_host.groups and not {"origin", "mirrors"} & set(
        inventory_host.groups
    ):
        port = int(inventory_host.data.get("monitor_status_tls_port") or 443)
    return Site(f"curl --resolve {name}:{port}:127.0.0.1", f"https://{name}:{port}", name, mode)


@pytest.fixture(scope="module")
def dotfile_status(host, inventory_host, site: Site) -> str:
    """The HTTP status nginx gives a dotfile that really is in the served tree.

    One check for every host serving a tree (origin and mirrors): only `.mirror/`
    may be served, never rsync's partial files or a half-written file. The probe
    is named like one of those (a dotfile ending in .tmp), which rsync never copies
    and publish never indexes, and it is removed at once.
    """
    tree = inventory_host.data.get("tree", "/srv/mirror")
    probe = f"{tree.rstrip('/')}/.mirrorfleet-infra-probe.tmp"
    script = (
        f"echo not-for-clients > {shlex.quote(probe)} || exit 1; "
        f"{site.curl} -s -o /dev/null -w '%{{http_code}}' "
        f"{site.url}/{shlex.quote(Path(probe).name)}; "
        f"status=$?; rm -f {shlex.quote(probe)}; exit $status"
    )
    return host.check_output(script)
