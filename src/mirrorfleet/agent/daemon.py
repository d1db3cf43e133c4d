"""The agent daemon: syncs when pinged, coalescing pings that arrive mid-sync into
exactly one follow-up sync; serves /metrics and /status.

The fallback timer is a systemd timer running `mirrorfleet agent sync`, which takes
the same lock, so a dead daemon never leaves a mirror unsynced.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge

from mirrorfleet.agent.sync import SyncResult, sync_lock, sync_once
from mirrorfleet.config import AgentConfig
from mirrorfleet.notify.ping import PingVerifier
from mirrorfleet.notify.service import json_reply, make_handler, metrics_route, serve_http
from mirrorfleet.tree.keys import read_secret

log = logging.getLogger("mirrorfleet.agent")


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.serial = Gauge("mirrorfleet_agent_serial", "Serial this mirror serves", registry=r)
        self.last_sync = Gauge(
            "mirrorfleet_agent_last_sync_timestamp_seconds", "End of the last sync", registry=r
        )
        self.last_success = Gauge(
            "mirrorfleet_agent_last_success_timestamp_seconds",
            "End of the last sync that succeeded (or found nothing to do)",
            registry=r,
        )
        self.duration = Gauge(
            "mirrorfleet_agent_last_sync_duration_seconds", "Wall time of the last sync", registry=r
        )
        self.bytes = Gauge(
            "mirrorfleet_agent_last_sync_bytes", "Bytes received by the last sync", registry=r
        )
        self.ok = Gauge("mirrorfleet_agent_last_sync_ok", "1 if the last sync worked", registry=r)
        self.syncs = Counter(
            "mirrorfleet_agent_syncs",
            "Syncs by result, and by how they caught up: delta (the change records) or "
            "full (a walk of the tree); empty when there was nothing to copy",
            ["result", "mode"],
            registry=r,
        )
        self.pings = Counter(
            "mirrorfleet_agent_pings", "Pings received by verdict", ["verdict"], registry=r
        )

    def record(self, result: SyncResult) -> None:
        self.syncs.labels(result.status, result.mode).inc()
        self.last_sync.set(result.finished)
        self.duration.set(result.seconds)
        self.ok.set(0 if result.status == "error" else 1)
        if result.status != "error":
            self.last_success.set(result.finished)
        if result.status == "synced":
            self.bytes.set(result.bytes)
        if result.serial is not None:
            self.serial.set(result.serial)


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.verifier = PingVerifier(read_secret(config.ping_secret))
        self.metrics = AgentMetrics()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.last: SyncResult | None = None
        # An "unchanged" check right after a catch-up would hide how the catch-up went.
        self.last_synced: SyncResult | None = None
        self.syncing = False

    def request_sync(self) -> None:
        """Safe from any thread; many requests during one sync make one follow-up."""
        self.wake.set()

    def run_loop(self) -> None:
        self.wake.set()  # sync once at start: we may have missed pings while down
        while not self.stopping.is_set():
            self.wake.wait()
            if self.stopping.is_set():
                break
            self.wake.clear()
            with sync_lock(self.config.state_dir, wait=True):
                self.syncing = True
                try:
                    result = sync_once(self.config)
                finally:
                    self.syncing = False
            self.last = result
            if result.status == "synced":
                self.last_synced = result
            self.metrics.record(result)
            log.info("sync %s: %s", result.status, json.dumps(result.as_dict()))

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def status(self) -> dict[str, object]:
        return {
            "name": self.config.name,
            "syncing": self.syncing,
            "pending": self.wake.is_set(),
            "last": self.last.as_dict() if self.last else None,
            "last_synced": self.last_synced.as_dict() if self.last_synced else None,
        }


def serve(config: AgentConfig) -> tuple[Agent, ThreadingHTTPServer, threading.Thread]:
    """Start the listener and the sync loop; the caller joins or stops them."""
    agent = Agent(config)
    handler = make_handler(
        "mirrorfleet-agent",
        agent.verifier,
        lambda _payload: agent.request_sync(),
        agent.metrics.pings,
        {
            "/metrics": metrics_route(agent.metrics.registry),
            "/status": lambda: json_reply(agent.status()),
        },
        log,
    )
    server = serve_http(config.listen_address, handler)
    loop = threading.Thread(target=agent.run_loop, name="sync-loop", daemon=True)
    loop.start()
    return agent, server, loop
