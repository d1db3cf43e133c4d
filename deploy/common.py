"""Converge only the common role (base packages, service user, sshd, time sync):
`pyinfra INVENTORY deploy/common.py`. Useful on new hosts before the full deploy.py."""

from mirrorfleet_roles import common

common.apply()
