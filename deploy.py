"""Full converge of a mirrorfleet: `pyinfra INVENTORY deploy.py`.

Every host gets the common role; the others run by inventory group.
"""

from pathlib import Path

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from mirrorfleet.control import deploylock
from mirrorfleet.errors import UserError
from mirrorfleet_roles import common, dns, mirror, monitor, origin

try:  # before any operation: a second concurrent run changes nothing
    deploylock.hold(Path(host.data.get("secrets_dir") or "secrets").expanduser())
except UserError as exc:
    raise DeployError(str(exc)) from None
common.apply()
if "origin" in host.groups:
    origin.apply()
if "mirrors" in host.groups:
    mirror.apply()
if "dns" in host.groups:
    dns.apply()
if "monitor" in host.groups:
    monitor.apply()
