"""`mirrorfleet monitor`: run the monitor, or ask it how the fleet is."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from mirrorfleet import web
from mirrorfleet.cli.options import config_option, json_option
from mirrorfleet.cli.output import emit_json, out, table
from mirrorfleet.config import MONITOR_PORT
from mirrorfleet.errors import UserError

# The most `monitor status` reads of status.json: a few hundred bytes per mirror (its
# state, serial, lag, error), so 16 MiB is tens of thousands of mirrors.
MAX_STATUS = 16 * 1024 * 1024


@click.group()
def monitor() -> None:
    """The monitor: probes every mirror as a client would and publishes the list in DNS."""


@monitor.command(name="run")
@config_option("/etc/mirrorfleet/monitor.toml")
def monitor_run(config_path: Path) -> None:
    """Run the daemon: probe every interval and on notifications, publish, report."""
    import logging
    import signal

    from mirrorfleet.config import load_monitor_config
    from mirrorfleet.monitor.daemon import load, serve

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    daemon = load(load_monitor_config(config_path))
    server, loop = serve(daemon)
    signal.signal(signal.SIGTERM, lambda *_: daemon.stop())
    try:
        while loop.is_alive():
            loop.join(1)
    except KeyboardInterrupt:
        daemon.stop()
    server.shutdown()


@monitor.command(name="status")
@click.option(
    "--url",
    default=f"http://127.0.0.1:{MONITOR_PORT}/status.json",
    show_default=True,
    help="The monitor's status JSON (its listen port, or the status page's /status.json).",
)
@json_option
def monitor_status(url: str, as_json: bool) -> None:
    """Every mirror's state, serial and lag, as the monitor sees it now."""
    try:
        with web.urlopen(url, timeout=10) as response:
            raw = response.read(MAX_STATUS + 1)
        if len(raw) > MAX_STATUS:
            raise ValueError(f"it is larger than {MAX_STATUS} bytes")
        data = json.loads(raw)
        mirrors, head = data["mirrors"], data["head"]
    except (*web.READ_ERRORS, KeyError, TypeError) as exc:
        raise UserError(f"no monitor status at {url}: {exc}") from None
    if as_json:
        emit_json(data)
        return
    out.print(
        f"head serial {head['serial']} ({head['origin']})"
        + (f", [red]{head['error']}[/]" if head.get("error") else "")
    )
    listing = table("mirror", "state", "dns", "serial", "lag", "error")
    colors = {"fresh": "green", "lagging": "yellow", "down": "red"}
    for m in mirrors:
        listing.add_row(
            m["label"],
            f"[{colors.get(m['state'], 'red')}]{m['state']}[/]",
            str(m["published"]),
            str(m["serial"]),
            f"{m['lag_serials']} serial(s)",
            escape(m["error"] or ""),
        )
    out.print(listing)
