"""`mirrorfleet proxy` and `mirrorfleet proxy-unit`: the local verifying index
(client/proxy.py), and the systemd units that keep it running for a user or a host."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mirrorfleet.cli.client import Where, _discover, forget_option, lookup_options, verified_floor
from mirrorfleet.cli.output import emit_json, err, out
from mirrorfleet.client.settings import PROXY_LISTEN
from mirrorfleet.errors import UserError

if TYPE_CHECKING:  # the proxy (and urllib3) load only when it runs: hosts never do
    from mirrorfleet.client.proxy import Answer, Proxy


@click.command()
@lookup_options
@click.option(
    "--listen",
    default=PROXY_LISTEN,
    show_default=True,
    metavar="HOST:PORT",
    help="Where pip and uv reach it; a socket systemd passes wins.",
)
@click.option("--max-lag", help="Accept mirrors this far behind: serials (2) or time (300s, 5m).")
@click.option(
    "--cooldown",
    type=click.FloatRange(1, 3600),
    default=30.0,
    show_default=True,
    help="Seconds a mirror that failed a request is passed over.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Find the fleet, prove the mirror that would answer first, print it, and exit.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every request.")
@forget_option
def proxy(
    where: Where,
    as_json: bool,
    listen: str,
    max_lag: str | None,
    cooldown: float,
    dry_run: bool,
    verbose: bool,
    forget: bool,
) -> None:
    """Serve the fleet to pip and uv as one local index that fails over per request
    and passes on only what the origin signed."""
    from mirrorfleet.client.choose import MaxLag
    from mirrorfleet.client.proxy import Proxy, Settings
    from mirrorfleet.client.proxy_server import make_server

    check_listen(listen)
    memory, _ = verified_floor(where.zone, forget)
    settings = Settings(where.zone, 2 * where.timeout, MaxLag.parse(max_lag), cooldown=cooldown)

    def discover():  # type: ignore[no-untyped-def]
        found, keys, _ = _discover(where)
        return found, keys

    service = Proxy(discover, settings, memory)
    if dry_run:
        try:
            first = _first(service)
        finally:
            service.close()
        status = service.status()
        if as_json:
            emit_json({**status, "would_answer": {"mirror": first.mirror, "serial": first.serial}})
        else:
            later = [m["target"] for m in status["mirrors"] if m["target"] != first.mirror]
            out.print(
                f"would serve {where.zone} from {first.mirror} at serial {first.serial} "
                f"(head {status['head']}); then: {', '.join(later) or 'no other mirror'}",
                soft_wrap=True,
            )
        return
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        server = make_server(service, listen)
    except OSError as exc:
        raise UserError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
    try:
        first = _first(service)
        source = f"from {first.mirror} (serial {first.serial})"
    except UserError as exc:  # started by a socket, or at boot: serve, and say why
        source = f"with no mirror yet ({exc}); every request tries again"
    err.print(
        f"serving {where.zone} at {server.base}/simple/ {source}; status at {server.base}/status",
        markup=False,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        service.close()


def check_listen(listen: str) -> None:
    from mirrorfleet.client.proxy_server import parse_listen

    try:
        parse_listen(listen)
    except ValueError as exc:
        raise click.UsageError(f"--listen: {exc}") from None


def _first(service: Proxy) -> Answer:
    """The mirror that would answer now, proven; UserError when none can."""
    service.refresh()
    if service.discovery is None:
        raise UserError(f"cannot find the fleet {service.settings.zone}: {service.problem}")
    return service.prove()


SOCKET_UNIT = """[Unit]
Description=mirrorfleet proxy socket: pip's and uv's index at http://{listen}/simple/

[Socket]
ListenStream={listen}

[Install]
WantedBy=sockets.target
"""

SERVICE_UNIT = """[Unit]
Description=mirrorfleet proxy: a local verifying index over the mirror fleet
Requires=mirrorfleet-proxy.socket
After=network-online.target mirrorfleet-proxy.socket

[Service]
# the fleet (zone, keys) comes from client.toml; the socket from systemd
ExecStart={command} proxy
Restart=on-failure
{hardening}
[Install]
WantedBy={wanted_by}
"""

SYSTEM_HARDENING = """DynamicUser=yes
StateDirectory=mirrorfleet-proxy
Environment=MIRRORFLEET_STATE_DIR=%S/mirrorfleet-proxy
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
"""


def units(listen: str, system: bool) -> dict[str, str]:
    """The two unit files by name: a socket on `listen`, and the service it starts."""
    command = shutil.which("mirrorfleet") or str(Path(sys.executable).with_name("mirrorfleet"))
    return {
        "mirrorfleet-proxy.socket": SOCKET_UNIT.format(listen=listen),
        "mirrorfleet-proxy.service": SERVICE_UNIT.format(
            command=command,
            hardening=SYSTEM_HARDENING if system else "",
            wanted_by="multi-user.target" if system else "default.target",
        ),
    }


def unit_dir(system: bool) -> Path:
    if system:
        return Path("/etc/systemd/system")
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


@click.command(name="proxy-unit")
@click.option("--system", is_flag=True, help="For the whole host, not only your user.")
@click.option("--listen", default=PROXY_LISTEN, show_default=True, metavar="HOST:PORT")
@click.option("--write", is_flag=True, help="Write them (else print them: a dry run).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def proxy_unit(system: bool, listen: str, write: bool, as_json: bool) -> None:
    """The systemd units that start the proxy on the first request (socket activation)."""
    from mirrorfleet.tree.files import atomic_write

    check_listen(listen)
    files = units(listen, system)
    directory = unit_dir(system)
    if write:
        for name, text in files.items():
            try:
                directory.mkdir(parents=True, exist_ok=True)
                atomic_write(directory / name, text.encode())
            except OSError as exc:
                raise UserError(f"cannot write {directory / name}: {exc.strerror}") from None
    scope = "" if system else " --user"
    enable = (
        f"systemctl{scope} daemon-reload && systemctl{scope} enable --now mirrorfleet-proxy.socket"
    )
    if as_json:
        emit_json(
            {
                "directory": str(directory),
                "units": files,
                "written": write,
                "enable": enable,
            }
        )
        return
    if write:
        err.print(f"wrote {', '.join(files)} to {directory}; now run: {enable}", markup=False)
        return
    for name, text in files.items():
        out.print(f"# {directory / name}\n{text}", markup=False, soft_wrap=True)


COMMANDS = (proxy, proxy_unit)
