"""Data for every host of every inventory (prod, lab, vagrant).

Host data and the roles' own defaults are documented in inventories/prod.py; set
here only what all your hosts share. An inventory's host data overrides it.
"""

# The unprivileged user all mirrorfleet services run as.
service_user = "mirrorfleet"

# Control-node folder with the fleet's secrets, made by `mirrorfleet keys init --dir`.
# Relative paths are taken from where pyinfra runs. Never commit it.
secrets_dir = "secrets"

# The DNS zone the mirror list is published in; the dns hosts serve it and the
# monitor writes it. Use a zone of your own, delegated to the dns group's hosts.
mirror_zone = "mirrors.example.org"
