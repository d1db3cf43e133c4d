"""Full converge of a mirrorfleet: `pyinfra INVENTORY deploy.py`.

Every host gets the common role; the others run by inventory group. What several
roles need (mirrorfleet installed, a tree served by nginx and rsync) is applied here,
once, before them: pyinfra runs an operation on all its hosts at once only when they
reach it from the same line, so the origin, the mirrors and the monitor install in
one step instead of three (the lab's first deploy: 68 s -> 55 s, bench/RESULTS.md).
"""

from pathlib import Path

from pyinfra import host
from pyinfra.api.exceptions import DeployError

from mirrorfleet.control import deploylock
from mirrorfleet.errors import UserError
from mirrorfleet_roles import common, dns, install, mirror, monitor, origin, serve_tree

RUNS_MIRRORFLEET = {"origin", "mirrors", "monitor"}  # their services are our own code
SERVES_A_TREE = {"origin", "mirrors"}

try:  # before any operation: a second concurrent run changes nothing
    deploylock.hold(Path(host.data.get("secrets_dir") or "secrets").expanduser())
except UserError as exc:
    raise DeployError(str(exc)) from None
common.apply()
installed = install.apply() if RUNS_MIRRORFLEET & set(host.groups) else None
if SERVES_A_TREE & set(host.groups):
    serve_tree.apply()
if "origin" in host.groups:
    origin.apply()
if "mirrors" in host.groups:
    mirror.apply(installed)
if "dns" in host.groups:
    dns.apply()
if "monitor" in host.groups:
    monitor.apply(installed)
