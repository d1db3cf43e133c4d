"""Production inventory: a template to copy and edit.

    pyinfra inventories/prod.py deploy.py            # converge the fleet
    pyinfra inventories/prod.py debug-inventory      # show hosts and data, offline

Each module-level list is a pyinfra group; the roles run by group (see deploy.py):

- origin:  the one host holding the canonical tree.
- mirrors: hosts that copy it and serve it over HTTP.
- dns:     authoritative BIND servers for the mirror zone.
- monitor: probes mirrors and is the only writer of the mirror list in DNS.

Host data keys (per host, or for every host in group_data/all.py):

- ssh_user (str): the user pyinfra connects as; root, or a sudoer with `--sudo`.
- ssh_key (str): path to the private key for that user.
- ssh_port (int): sshd port; 22 if unset.
- mirror_zone (str): the zone the mirror list is published in (group_data/all.py).
- dns_role ("primary" | "secondary"): required on each dns host; exactly one primary.
- dns_address (str): a dns host's IPv4 address, for BIND's primaries/also-notify;
  default: ssh_hostname when that is an address.
- dns_soa_minimum (int): negative-caching time of the zone, 60-300 s (60).
- dns_dnssec (bool): sign the zone with BIND's dnssec-policy (False; on in the lab).
- mirror_region (str): a mirror's region label; each region gets its own SRV name.
- mirror_weight (int): the mirror's SRV weight, 0-65535 (100): its share of the
  clients among mirrors of the same priority.
- secrets_dir (str): control-node folder made by `mirrorfleet keys init --dir DIR`
  ("secrets", set in group_data/all.py). The origin gets the signing key, the
  mirrors and the monitor the ping secret, the dns hosts their TSIG keys, the
  monitor its own TSIG key; nothing else leaves it. A deploy holds
  `deploy.lock` in it, so a second concurrent deploy of the fleet stops at once.
- monitor_interval (int): seconds between the monitor's full probes (30);
  notifications from the origin and agents trigger probes in between.
- monitor_lag_grace (int): seconds a mirror may be behind a new head before it is
  lagging (10).
- monitor_down_after / monitor_up_after (int): unreachable probes in a row before
  a mirror is down, good ones before it returns (2 / 2).
- monitor_min_listed (int): fail static below this many mirrors up: DNS keeps the
  last published set (1).
- monitor_spot_checks (int): projects checked per probe against the signed
  manifest, index page and one file each (2; 0 for stamps only).
- monitor_port (int): the monitor daemon's port for pings and /metrics (8874).
- monitor_status_port (int): the status page's plain-HTTP nginx port (80); with tls
  on it redirects to monitor_status_tls_port (443).
- tls ("acme" | "own" | "off"): how the host's nginx serves (roles/tls): a
  certificate from an ACME CA by certbot (default), the operator's own
  (tls_certificate and tls_key: files on the control node), or plain HTTP kept on
  purpose. Port 80 answers ACME challenges and redirects to HTTPS.
- acme_directory (str): the ACME CA's directory URL; unset: certbot's default CA.
- acme_email (str): the ACME account's contact; unset: none.
- acme_challenge ("http-01" | "dns-01"): how the CA checks the name: through the
  host's own nginx (default), or a TXT record at the fleet's BIND primary, written
  with a key made for this host alone (its public name must lie in mirror_zone).
- acme_dns_propagation_seconds (int): DNS-01's wait before the CA looks (30).
- tls_trust (str): a PEM bundle on the control node whose roots every host trusts
  (a private CA's); unset: the system's roots.
- tree (str): where the tree lives on origin and mirrors ("/srv/mirror").
- preset ("pypi" | "debian"): which top-level paths are content, synced first.
- origin_state_dir (str): on the origin, publish's own state, what the tree held at
  the last publish ("/var/lib/mirrorfleet/origin").
- origin_keep_records (int): change records the origin keeps in .mirror/changes/,
  how far behind a mirror may fall and still catch up from them (20000).
- heartbeat_interval (int): seconds between the origin's heartbeats, each signing its
  current stamp again (300).
- stamp_lifetime (int): how long a stamp counts as fresh; a mirror the heartbeat
  stops reaching is stale after this long (1800, at least twice the heartbeat).
- mirror_upstream (str): on a mirror, another mirror's inventory name to sync from
  (tiers); unset: the origin.
- sync_interval (int): a mirror's fallback sync period when no ping comes (300 s).
- sync_bwlimit_kbps (int): rsync bandwidth limit in KiB/s, 0 for none.
- audit_schedule (str): when a mirror runs its full sync, repairing files changed
  behind the agent's back (systemd OnCalendar, "daily").
- public_name (str): the name other hosts use to reach this one; default: the
  inventory name.
- public_address (str): the IPv4 address clients reach a host at, when its public
  name lies inside mirror_zone (the dns role writes its A record); default: a dns
  host's dns_address, else ssh_hostname if that is an address.
- common_packages (list[str]): base packages every host gets.
- common_apt_update (bool): run `apt-get update` before installing (default True).
- common_apt_cache_time (int): skip that update if the cache is younger (seconds, 3600).
- service_user (str): unprivileged user the mirrorfleet services run as ("mirrorfleet").
- service_home (str): its home and state directory ("/var/lib/mirrorfleet").
- config_dir (str): configuration directory, secrets inside are 0600 ("/etc/mirrorfleet").
- sshd_permit_root_login (str): sshd PermitRootLogin ("prohibit-password").
- sshd_max_auth_tries (int): sshd MaxAuthTries (3).
- common_time_sync (bool): enable systemd-timesyncd; inert in containers (True).

The inventory is checked as it loads, before any SSH connection is made.
"""

from mirrorfleet.control.inventory import module_groups, validate_groups

origin = [
    ("origin.example.org", {"ssh_user": "root"}),
]

mirrors = [
    "mirror-fra1.example.org",
    "mirror-ams1.example.org",
    "mirror-nyc1.example.org",
]

dns = [
    ("ns1.example.org", {"dns_role": "primary", "dns_address": "192.0.2.53"}),
    ("ns2.example.org", {"dns_role": "secondary", "dns_address": "198.51.100.53"}),
]

monitor = [
    "monitor.example.org",
]

validate_groups(module_groups(globals()))
