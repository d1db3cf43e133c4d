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
        self, root: Path, secrets: SecretsDir, labels: Sequence[str], projects: int = 5
    ) -> None:
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
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Quiet, directory=root / "www")
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

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
        return MirrorSpec(label=label, target=f"{label}.example.net", url=f"{self.base}/{label}/")

    def config(self) -> FleetConfig:
        return FleetConfig(
            f"{self.base}/origin/",
            self.pinned,
            tuple(self.spec(m) for m in self.labels),
            timeout=2,
            root_threshold=self.threshold,
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
