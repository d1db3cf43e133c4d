"""The local lab: real systemd hosts in network namespaces, on one machine."""
