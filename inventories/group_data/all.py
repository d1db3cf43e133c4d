"""Data for every host of every inventory (prod, lab, vagrant).

Host data and the roles' own defaults are documented in inventories/prod.py; set
here only what all your hosts share. An inventory's host data overrides it.
"""

# The unprivileged user all mirrorfleet services run as.
service_user = "mirrorfleet"

# Control-node folder with the fleet's secrets, made by `mirrorfleet keys init --dir`.
# Relative paths are taken from where pyinfra runs. Never commit it.
secrets_dir = "secrets"
