"""The monitor daemon: probes every mirror as a client would and is the fleet's only
DNS writer (health, fail static, status page, metrics)."""
