"""The local lab, as left by `mirrorfleet lab up` (state file of lab MIRRORFLEET_LAB).

    mirrorfleet lab up
    pyinfra inventories/lab.py deploy.py

Groups and hosts come from the lab's topology; nothing here needs editing.
"""

from mirrorfleet.control.inventory import module_groups, validate_groups
from mirrorfleet.lab.inventory import lab_groups

# pyinfra turns every module-level list into a group; the lab's groups are dynamic.
globals().update(lab_groups())
validate_groups(module_groups(globals()))
