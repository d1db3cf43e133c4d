"""The mirrorfleet lab as Vagrant VMs (see the Vagrantfile at the repository root).

Same hosts, groups and host data as the default lab topology
(src/mirrorfleet/lab/topology.toml). From the repository root:

    vagrant up
    pyinfra inventories/vagrant.py deploy.py

Each host is named ``@vagrant/<vm name>``: pyinfra's @vagrant connector asks
``vagrant status`` and ``vagrant ssh-config`` (run in the current directory, so run
pyinfra from the repository root) how to reach it, and fails for a VM that is not
running. Export the same MIRRORFLEET_MIRRORS (default 3), and MIRRORFLEET_VAGRANT_HOSTS
when only some VMs run, for both commands.
"""

import os

from mirrorfleet.control.inventory import module_groups, validate_groups
from mirrorfleet.errors import UserError

_MAX_MIRRORS = 241  # addresses .10-.254, less the four fixed hosts (as in the Vagrantfile)


def _mirror_count() -> int:
    raw = os.environ.get("MIRRORFLEET_MIRRORS", "3")
    try:
        count = int(raw)
    except ValueError:
        count = 0
    if not 1 <= count <= _MAX_MIRRORS:
        raise UserError(
            f"MIRRORFLEET_MIRRORS must be a whole number from 1 to {_MAX_MIRRORS}, got {raw!r}"
        )
    return count


# The VMs have no ACME CA to ask (the lab's is its pebble host): plain HTTP, on purpose.
# pyinfra logs in as `vagrant` and works through sudo (the lab logs in as root).
# MIRRORFLEET_SECRETS_DIR names a secrets folder other than group_data's `secrets`.
# Each VM makes its host keys at first boot; like `vagrant ssh` itself
# (UserKnownHostsFile /dev/null, StrictHostKeyChecking no), keep none of them.
_HTTP: dict = {
    "tls": "off",
    "_sudo": True,
    "ssh_known_hosts_file": "/dev/null",
    "ssh_strict_host_key_checking": "off",
}
if os.environ.get("MIRRORFLEET_SECRETS_DIR"):
    _HTTP["secrets_dir"] = os.environ["MIRRORFLEET_SECRETS_DIR"]


# Module-level lists are the inventory's groups; (name, data) tuples carry host data.
def _chosen(entries: list) -> list:
    """Only the VMs MIRRORFLEET_VAGRANT_HOSTS names (as the Vagrantfile defines them);
    every one when it is unset."""
    raw = os.environ.get("MIRRORFLEET_VAGRANT_HOSTS", "")
    wanted = {name.strip() for name in raw.split(",") if name.strip()}
    return [e for e in entries if not wanted or e[0].removeprefix("@vagrant/") in wanted]


origin = _chosen([("@vagrant/origin", {**_HTTP, "acme_challenge": "dns-01"})])
dns = _chosen(
    [
        ("@vagrant/dns1", {**_HTTP, "dns_role": "primary"}),
        ("@vagrant/dns2", {**_HTTP, "dns_role": "secondary"}),
    ]
)
monitor = _chosen([("@vagrant/monitor", _HTTP)])
mirrors = _chosen([(f"@vagrant/mirror{i}", _HTTP) for i in range(1, _mirror_count() + 1)])

validate_groups(module_groups(globals()))
