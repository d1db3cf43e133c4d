"""A real BIND primary (and optionally a secondary) on 127.0.0.1, configured from
the dns role's own named.conf template, for tests and benchmarks that need an
authoritative server without lab hosts."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype

from mirrorfleet.testing.loopback import ClosedOnExit, free_port, stop_process
from mirrorfleet.tree.keys import (
    HOSTS_TSIG,
    MONITOR_TSIG,
    TRANSFER_TSIG,
    acme_tsig_name,
    tsig_secret,
)
from mirrorfleet.zone.providers.rfc2136 import Rfc2136Provider

START_TIMEOUT = 20.0


@dataclass
class NamedProcess:
    role: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "named.log"

    def soa_serial(self, zone: str) -> int | None:
        query = dns.message.make_query(zone, "SOA")
        try:
            response = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.5)
        except (dns.exception.Timeout, OSError):
            return None
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None


@dataclass
class LoopbackBind(ClosedOnExit):
    """`with LoopbackBind(workdir, "mirrors.test.") as bind:` -> bind.provider() writes the zone."""

    workdir: Path
    zone: str
    seed: str = ""  # extra zone-file lines: foreign records the tests expect to survive
    secondary: bool = False
    regions: tuple[str, ...] = ()
    dnssec: bool = False
    host_names: tuple[str, ...] = ()  # names whose A records the hosts key may write
    acme_names: tuple[str, ...] = ()  # names validated by DNS-01, each with its own key
    keys: dict[str, str] = field(default_factory=dict)
    servers: list[NamedProcess] = field(default_factory=list)

    @property
    def primary(self) -> NamedProcess:
        return self.servers[0]

    def provider(self, key_name: str = MONITOR_TSIG, timeout: float = 5.0) -> Rfc2136Provider:
        return Rfc2136Provider(
            self.zone,
            "127.0.0.1",
            key_name,
            self.keys[key_name],
            self.primary.port,
            timeout=timeout,
        )

    def __enter__(self) -> LoopbackBind:
        from mirrorfleet_roles.dns import named_conf, render_keys, render_seed

        if shutil.which("named") is None:
            raise RuntimeError("named is not installed: apt-get install bind9")
        acme_keys = tuple(acme_tsig_name(n) for n in self.acme_names)
        names = (MONITOR_TSIG, TRANSFER_TSIG, HOSTS_TSIG, *acme_keys)
        self.keys = {k: tsig_secret() for k in names}
        roles = ["primary"] + (["secondary"] if self.secondary else [])
        self.servers = [NamedProcess(r, free_port(), self.workdir / r) for r in roles]
        zone = self.zone.rstrip(".")
        for server in self.servers:
            server.workdir.mkdir(parents=True, exist_ok=True)
            (server.workdir / "keys.conf").write_text(render_keys(self.keys))
            other = [s.port for s in self.servers if s is not server]
            conf = named_conf(
                zone,
                server.role,
                primary="127.0.0.1",
                secondaries=["127.0.0.1"] * len(other),
                regions=self.regions,
                host_names=self.host_names,
                acme_names=self.acme_names,
                dnssec=self.dnssec and server.role == "primary",
                port=server.port,
                peer_port=other[0] if other else server.port,
                directory=str(server.workdir),
                zone_file=str(server.workdir / "zone.db"),
                keys_file=str(server.workdir / "keys.conf"),
                key_directory=str(server.workdir / "keys"),
                pid_file=str(server.workdir / "named.pid"),
                listen_v4="127.0.0.1",
                listen_v6="none",
            )
            if server.role == "primary":
                (server.workdir / "keys").mkdir(exist_ok=True)
                seed = render_seed(zone, [(f"ns1.{zone}.", "127.0.0.1")], minimum=60, ttl=300)
                (server.workdir / "zone.db").write_text(seed + self.seed)
            (server.workdir / "named.conf").write_text(conf.render())
        try:
            for server in self.servers:
                self._start(server)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, server: NamedProcess) -> None:
        conf = server.workdir / "named.conf"
        check = subprocess.run(
            ["named-checkconf", "-z", str(conf)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"named-checkconf refused {conf}: {check.stdout}{check.stderr}")
        with server.log.open("wb") as log:
            server.proc = subprocess.Popen(
                ["named", "-g", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT
        while server.soa_serial(self.zone) is None:
            if time.monotonic() > deadline or server.proc.poll() is not None:
                raise RuntimeError(f"named ({server.role}) did not start: {self.tail(server)}")
            time.sleep(0.05)

    def tail(self, server: NamedProcess, size: int = 2000) -> str:
        try:
            return server.log.read_text()[-size:]
        except OSError:
            return "(no log)"

    def close(self) -> None:
        for server in reversed(self.servers):
            if server.proc is not None:
                stop_process(server.proc, timeout=15)
