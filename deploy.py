"""Full converge of a mirrorfleet: `pyinfra INVENTORY deploy.py`.

Every host gets the common role; the others run by inventory group.
"""

from pyinfra import host

from mirrorfleet_roles import common, dns, mirror, monitor, origin

common.apply()
if "origin" in host.groups:
    origin.apply()
if "mirrors" in host.groups:
    mirror.apply()
if "dns" in host.groups:
    dns.apply()
if "monitor" in host.groups:
    monitor.apply()
