"""Full converge of a mirrorfleet: `pyinfra INVENTORY deploy.py`.

Which roles run where is decided by inventory group: origin, mirrors, dns, monitor.
Every host gets the common role first.
"""

from mirrorfleet_roles import common

common.apply()
