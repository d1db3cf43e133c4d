"""`mirrorfleet agent`: the mirror's sync agent."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mirrorfleet.cli.options import config_option, json_option
from mirrorfleet.cli.output import emit_json, out
from mirrorfleet.config import AgentConfig


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

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = _load(config_path)
    agent_, server, loop = serve(config)
    signal.signal(signal.SIGTERM, lambda *_: agent_.stop())
    try:
        loop.join()
    except KeyboardInterrupt:
        agent_.stop()
    server.shutdown()


@agent.command(name="sync")
@config_option("/etc/mirrorfleet/agent.toml")
@click.option(
    "--full",
    is_flag=True,
    help="Walk the whole tree, even at the head serial: repairs what was changed behind "
    "the agent's back (the daily audit timer runs this).",
)
@click.option(
    "--wait", is_flag=True, help="Wait for a running sync to end instead of reporting busy."
)
@json_option
def agent_sync(config_path: Path, full: bool, wait: bool, as_json: bool) -> None:
    """Sync once now (the fallback timer runs this). Exits 1 if the sync failed.

    By default it copies what the upstream's change records name since the serial
    served here, and walks the whole tree only when they cannot say (see --json's
    mode and why_full)."""
    import logging

    from mirrorfleet.agent.sync import SyncResult, sync_lock, sync_once

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = _load(config_path)
    with sync_lock(config.state_dir, wait=wait) as locked:
        result = sync_once(config, full=full) if locked else SyncResult(status="busy")
    if as_json:
        emit_json(result.as_dict())
    else:
        how = f" ({result.mode}{': ' + result.why_full if result.why_full else ''})"
        detail = how if result.mode else ""
        out.print(f"{result.status}: serial {result.serial}{detail} {result.error}".rstrip())
    if result.status == "error":
        sys.exit(1)


def _load(config_path: Path) -> AgentConfig:
    """The agent's config, with its trust for an https upstream in force."""
    from mirrorfleet import web
    from mirrorfleet.config import load_agent_config

    config = load_agent_config(config_path)
    web.use_ca_file(config.ca_file if config.ca_file != Path() else None)
    return config
