"""`mirrorfleet agent`: the mirror's sync agent."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mirrorfleet.cli.options import config_option, json_option
from mirrorfleet.cli.output import emit_json, out


@click.group()
def agent() -> None:
    """The mirror's sync agent."""


@agent.command(name="run")
@config_option("/etc/mirrorfleet/agent.toml")
def agent_run(config_path: Path) -> None:
    """Run the daemon: sync on authenticated pings, serve /metrics and /status."""
    import logging
    import signal

    from mirrorfleet.agent.daemon import serve
    from mirrorfleet.config import load_agent_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_agent_config(config_path)
    agent_, server, loop = serve(config)
    signal.signal(signal.SIGTERM, lambda *_: agent_.stop())
    try:
        loop.join()
    except KeyboardInterrupt:
        agent_.stop()
    server.shutdown()


@agent.command(name="sync")
@config_option("/etc/mirrorfleet/agent.toml")
@json_option
def agent_sync(config_path: Path, as_json: bool) -> None:
    """Sync once now (the fallback timer runs this). Exits 1 if the sync failed."""
    import logging

    from mirrorfleet.agent.sync import SyncResult, sync_lock, sync_once
    from mirrorfleet.config import load_agent_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_agent_config(config_path)
    with sync_lock(config.state_dir, wait=False) as locked:
        result = sync_once(config) if locked else SyncResult(status="busy")
    if as_json:
        emit_json(result.as_dict())
    else:
        out.print(f"{result.status}: serial {result.serial} {result.error}".rstrip())
    if result.status == "error":
        sys.exit(1)
