"""A whole fleet's trees on one loopback HTTP server: the origin's, signed by the real
origin code, and mirror copies the tests age, forge or break on purpose. The monitor
and client tests probe it exactly as they would probe real hosts."""

from __future__ import annotations

import functools
import shutil
import threading
from collections.abc import Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorfleet.config import DnsConfig, MonitorConfig, OriginConfig
from mirrorfleet.content import pypi
from mirrorfleet.origin.publish import publish
from mirrorfleet.probe.observe import FleetConfig, MirrorSpec
from mirrorfleet.tree.keys import MONITOR_TSIG, SecretsDir

if TYPE_CHECKING:
    from mirrorfleet.monitor.daemon import Monitor
    from mirrorfleet.testing.loopback_dns import LoopbackBind


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackFleet:
    """`root/www/origin` and `root/www/<label>` for each mirror, all served on 127.0.0.1."""

    def __init__(
        self,
        root: Path,
        secrets: SecretsDir,
        labels: Sequence[str],
        projects: int = 5,
        own_servers: bool = False,
    ) -> None:
        """own_servers: each mirror on a server (port) of its own, which `stop` and
        `start` take down and bring back, as a mirror host would fail."""
        self.root, self.secrets, self.labels = root, secrets, tuple(labels)
        # what the monitor pins: the origin's own key, until a test pins roots instead
        self.pinned: tuple[str, ...] = (secrets.public_key.read_text().strip(),)
        self.threshold = 1
        self.origin = OriginConfig(
            name="origin",
            tree=root / "www" / "origin",
            signing_key=secrets.signing_key,
            ping_secret=secrets.ping_secret,
            state_dir=root / "origin-state",
        )
        pypi.generate(self.origin.tree, projects)
        publish(self.origin, ping=False)
        for label in self.labels:
            self.sync(label)
        self.server = self._serve(0)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.servers: dict[str, ThreadingHTTPServer] = {}
        self.ports: dict[str, int] = {}
        if own_servers:
            for label in self.labels:
                self.start(label)

    def _serve(self, port: int) -> ThreadingHTTPServer:
        handler = functools.partial(_Quiet, directory=self.root / "www")
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def start(self, label: str) -> None:
        """Serve the mirror again, on the port it had (a new one the first time)."""
        server = self._serve(self.ports.get(label, 0))
        self.servers[label], self.ports[label] = server, server.server_address[1]

    def stop(self, label: str) -> None:
        """The mirror's host stops answering: connections are refused."""
        server = self.servers.pop(label)
        server.shutdown()
        server.server_close()

    def url(self, label: str) -> str:
        if label in self.ports:
            return f"http://127.0.0.1:{self.ports[label]}/{label}/"
        return f"{self.base}/{label}/"

    def tree(self, label: str) -> Path:
        return self.root / "www" / label

    def sync(self, label: str) -> None:
        """What an agent's sync leaves: the origin's tree, copied."""
        shutil.copytree(self.origin.tree, self.tree(label), dirs_exist_ok=True)

    def release(self, version: str, project: str = "demo-0000") -> int:
        """A new release on the origin, published; returns the new serial."""
        pypi.add_release(self.origin.tree, project, version)
        return publish(self.origin, ping=False).serial

    def spec(self, label: str) -> MirrorSpec:
        return MirrorSpec(label=label, target=f"{label}.example.net", url=self.url(label))

    def config(self) -> FleetConfig:
        return FleetConfig(
            f"{self.base}/origin/",
            self.pinned,
            tuple(self.spec(m) for m in self.labels),
            timeout=2,
            root_threshold=self.threshold,
        )

    def close(self) -> None:
        for server in [self.server, *self.servers.values()]:
            server.shutdown()
            server.server_close()
        self.servers.clear()


def loopback_monitor(
    fleet: LoopbackFleet, bind: LoopbackBind, status_dir: Path, **settings: Any
) -> Monitor:
    """A monitor of `fleet` publishing into `bind` with the publisher's TSIG key, as the
    monitor role sets one up; `settings` override MonitorConfig's defaults."""
    from mirrorfleet.monitor.daemon import Monitor

    key_file = fleet.root / "tsig-monitor.key"
    key_file.write_text(bind.keys[MONITOR_TSIG])
    key_file.chmod(0o600)
    dns_config = DnsConfig(
        zone=bind.zone,
        server="127.0.0.1",
        port=bind.primary.port,
        key_name=MONITOR_TSIG,
        key_file=key_file,
    )
    config = MonitorConfig(
        fleet=fleet.root / "fleet.toml",  # unused: the fleet is passed in
        ping_secret=fleet.secrets.ping_secret,
        status_dir=status_dir,
        **settings,
    )
    return Monitor(config, fleet.config(), dns_config, provider=bind.provider())
