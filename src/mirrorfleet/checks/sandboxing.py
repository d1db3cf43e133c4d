"""What `systemctl show` must report for every mirrorfleet unit: roles/fleet.py's
sandbox(), seen from the host. Each role's test adds what is its own."""

SANDBOXED = [
    ("User", "mirrorfleet"),
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("PrivateTmp", "yes"),
    ("ProtectHome", "yes"),
    ("PrivateUsers", "yes"),
    ("ProtectProc", "invisible"),
    ("ProcSubset", "pid"),
    ("MemoryDenyWriteExecute", "yes"),
    ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
    ("CapabilityBoundingSet", ""),
]
