"""The lab's ACME CA: Debian's pebble on the lab's `acme` host, started by `lab up`.

It stands for the public CA a production fleet uses (Let's Encrypt or another):
outside the fleet, so no role deploys it. It validates HTTP-01 and DNS-01
challenges by asking the lab's own DNS for the mirrors' names, as a public CA asks
the public DNS.

Two roots come out of it, and the lab trusts both (`roots_file`, handed to every
host as `tls_trust` and to clients on the control node as a file): the one that
signs pebble's own listener (pebble ships none; made here) and the one pebble signs
certificates with, which pebble makes afresh whenever it starts.
"""

from __future__ import annotations

import json
import shutil
import ssl
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from mirrorfleet.errors import UserError
from mirrorfleet.lab.ca import LabCA
from mirrorfleet.lab.inventory import (
    ACME_GROUP,
    ACME_PORT,
    ACME_ROOTS,
    acme_directory,
    public_name,
)
from mirrorfleet.lab.ssh import ssh_run
from mirrorfleet.lab.state import HostState, LabState

MANAGEMENT_PORT = 15000
UNIT = "mirrorfleet-lab-acme.service"
CONFIG_DIR = "etc/mirrorfleet-lab-acme"  # inside the acme host
# Issued certificates last 90 days, as Let's Encrypt's do (pebble's default is 5 years,
# which would hide a renewal that never happens).
VALIDITY = 90 * 24 * 3600
START_TIMEOUT = 30.0

UNIT_TEXT = """\
# Written by `mirrorfleet lab up` (mirrorfleet.lab.acme): the lab's ACME CA.
[Unit]
Description=The lab's ACME CA (pebble)
After=network-online.target

[Service]
# No random sleeps before validating, no nonces refused on purpose, no authorization
# reused: every order is validated for real, and fast.
Environment=PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0
ExecStart=/usr/bin/pebble -config /{config_dir}/pebble.json -strict=false{dns}
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""


def acme_host(state: LabState) -> HostState | None:
    hosts = [h for h in state.hosts if ACME_GROUP in h.groups]
    return hosts[0] if hosts else None


def roots_file(state: LabState) -> Path:
    """The PEM bundle a lab client trusts: the listener's root and pebble's."""
    return state.dir / ACME_ROOTS


def _dns_server(state: LabState) -> str | None:
    """The lab's primary (it holds new address records first), else any DNS host."""
    dns = [h for h in state.hosts if "dns" in h.groups]
    dns.sort(key=lambda h: h.data.get("dns_role") != "primary")
    return dns[0].address if dns else None


def _install(state: LabState, host: HostState) -> None:
    """pebble's config, its listener certificate and its unit, into the host's root."""
    root = state.host_dir(host.name) / "root"
    folder = root / CONFIG_DIR
    folder.mkdir(parents=True, exist_ok=True)
    listener_root = state.dir / "acme-listener-root.pem"
    if not (folder / "listener.key").exists() or not listener_root.exists():
        ca = LabCA(state.dir / "acme-ca", "mirrorfleet lab ACME listener root")
        names = (public_name(host.name), host.name, host.address, "localhost")
        leaf = ca.leaf("listener", names, days=3650)
        shutil.copyfile(leaf.cert, folder / "listener.crt")
        shutil.copyfile(leaf.key, folder / "listener.key")
        (folder / "listener.key").chmod(0o600)
        shutil.copyfile(ca.root, listener_root)
        shutil.rmtree(state.dir / "acme-ca")  # the root key has done its one job
    config = {
        "pebble": {
            "listenAddress": f"0.0.0.0:{ACME_PORT}",
            "managementListenAddress": f"0.0.0.0:{MANAGEMENT_PORT}",
            "certificate": f"/{CONFIG_DIR}/listener.crt",
            "privateKey": f"/{CONFIG_DIR}/listener.key",
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            "certificateValidityPeriod": VALIDITY,
        }
    }
    (folder / "pebble.json").write_text(json.dumps(config, indent=2) + "\n")
    server = _dns_server(state)
    unit = UNIT_TEXT.format(config_dir=CONFIG_DIR, dns=f" -dnsserver {server}:53" if server else "")
    (root / "etc/systemd/system" / UNIT).write_text(unit)


def start(state: LabState, report: Callable[[str, str], None]) -> Path | None:
    """pebble running on the acme host, and its roots in roots_file(); None without
    an acme host. Rerun on a running lab: the same pebble, the same roots."""
    host = acme_host(state)
    if host is None:
        return None
    report(host.name, "starting the ACME CA (pebble)")
    _install(state, host)
    proc = ssh_run(state, host.name, f"systemctl daemon-reload && systemctl enable --now {UNIT}")
    if proc.returncode != 0:
        raise UserError(f"{host.name}: pebble did not start: {proc.stderr.strip()}")
    listener_root = state.dir / "acme-listener-root.pem"
    context = ssl.create_default_context(cafile=str(listener_root))
    url = f"https://{host.address}:{MANAGEMENT_PORT}/roots/0"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                pebble_root = response.read()
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise UserError(f"{host.name}: pebble's roots at {url}: {exc}") from None
            time.sleep(0.5)
    bundle = roots_file(state)
    bundle.write_bytes(listener_root.read_bytes() + pebble_root)
    report(host.name, f"ACME CA at {acme_directory(host.name)}; lab roots in {bundle}")
    return bundle
