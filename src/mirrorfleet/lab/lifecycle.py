"""`lab up`, `lab down` and `lab status`: idempotent, and safe to rerun after a crash."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mirrorfleet.errors import UserError
from mirrorfleet.lab import acme, container, network
from mirrorfleet.lab.inventory import ACME_GROUP, public_name
from mirrorfleet.lab.ssh import ensure_keypair, ssh_run, write_client_config
from mirrorfleet.lab.state import (
    HostState,
    LabState,
    kernel_prefix,
    lab_dir,
    lab_name,
    load_state,
)
from mirrorfleet.lab.system import require_root, require_tools, run
from mirrorfleet.lab.template import ensure_template, template_dir
from mirrorfleet.lab.topology import Topology
from mirrorfleet.tree.keys import init_secrets

BOOT_TIMEOUT = 90.0
Report = Callable[[str, str], None]  # (host, message)


@dataclass
class HostBoot:
    name: str
    seconds: float
    system_state: str
    failed_units: list[str]


def _silent(_host: str, _message: str) -> None:
    pass


def plan_state(name: str, topology: Topology, template: str) -> LabState:
    prefix = kernel_prefix(name)
    return LabState(
        name=name,
        subnet=str(topology.subnet),
        gateway=str(topology.gateway),
        bridge=network.bridge_name(prefix),
        template=template,
        hosts=[
            HostState(
                name=h.name,
                groups=list(h.groups),
                address=str(h.address),
                data=dict(h.data),
                netns=network.netns_name(prefix, h.name),
                veth=network.veth_name(prefix, h.name),
            )
            for h in topology.hosts
        ],
    )


def _same_layout(a: LabState, b: LabState) -> bool:
    def layout(s: LabState) -> Any:
        return s.subnet, [(h.name, h.address, h.groups) for h in s.hosts]

    return layout(a) == layout(b)


def hosts_file(state: LabState) -> str:
    """Each host's inventory name; its public name (`<name>.<zone>`) too, unless the
    lab has DNS hosts: then public names resolve through the fleet's own DNS. The
    ACME CA is outside the fleet (as a public CA is outside its DNS): always here."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    by_dns = bool(nameservers(state))
    for h in state.hosts:
        listed = not by_dns or ACME_GROUP in h.groups
        public = f"\t{public_name(h.name)}" if listed else ""
        lines.append(f"{h.address}\t{h.name}{public}")
    return "\n".join(lines) + "\n"


def nameservers(state: LabState) -> list[str]:
    """The lab's DNS hosts' addresses for every host's resolver, secondaries first:
    the primary takes the updates, the secondaries answer (a host asks them directly,
    with no caching resolver that would learn to skip a dead one, so with the primary
    first every lookup while it is down would wait out glibc's timeout)."""
    dns = [h for h in state.hosts if "dns" in h.groups]
    dns.sort(key=lambda h: h.data.get("dns_role") == "primary")
    return [h.address for h in dns]


def resolv_conf(state: LabState) -> str | None:
    """Through the lab's authoritative servers, when it has them (nothing else resolves
    in a lab: it has no internet)."""
    servers = nameservers(state)
    if not servers:
        return None
    lines = [f"nameserver {a}" for a in servers] + ["options timeout:1 attempts:2"]
    return "\n".join(lines) + "\n"


def up(
    topology: Topology,
    name: str | None = None,
    report: Report = _silent,
    boot_timeout: float = BOOT_TIMEOUT,
) -> tuple[LabState, list[HostBoot]]:
    require_root("`mirrorfleet lab up`")
    require_tools()
    name = lab_name(name)
    existing = load_state(name)
    # a running lab keeps the template it was built on, even if a newer one exists
    kept = existing and Path(existing.template).is_dir()
    template = Path(existing.template) if kept else template_dir() / "rootfs"
    state = plan_state(name, topology, str(template))
    if existing:
        if not _same_layout(existing, state):
            raise UserError(
                f"lab {name!r} is already up with another topology; "
                "run `mirrorfleet lab down` first"
            )
        for host, old in zip(state.hosts, existing.hosts, strict=True):
            host.pid = old.pid
    network.check_free(topology.subnet, state.bridge)
    if not kept:
        template = ensure_template(lambda msg: report("template", msg))
    pubkey = ensure_keypair(state.key)
    init_secrets(state.secrets_dir)  # the lab makes its own fleet secrets
    state.save()  # from here on, `down` can find everything we make

    subnet, gateway = topology.subnet, topology.gateway
    network.ensure_bridge(state.bridge, gateway, subnet)
    etc_hosts, resolver = hosts_file(state), resolv_conf(state)
    lock = threading.Lock()

    def prepare(host: HostState) -> tuple[str, str]:
        report(host.name, "wiring network and overlay")
        network.ensure_host_network(
            host.netns, host.veth, state.bridge, topology.host(host.name).address, subnet, gateway
        )
        root = container.ensure_overlay(template, state.host_dir(host.name))
        container.personalize(root, host.name, etc_hosts, pubkey, resolver)
        return host.name, container.host_public_key(root)

    def boot(host: HostState) -> HostBoot:
        started = time.monotonic()
        root = state.host_dir(host.name) / "root"
        if not container.is_ours(host.pid, root):
            report(host.name, "booting")
            pid = container.start(
                root,
                f"{state.prefix}-{host.name}",
                host.netns,
                host.name,
                state.host_dir(host.name) / "console.log",
                state.prefix,
            )
            with lock:
                host.pid = pid
                state.save()
        assert host.pid is not None
        container.wait_for_port(host.address, 22, boot_timeout, host.pid, root)
        report(host.name, "sshd up, waiting for systemd")
        system_state, failed = wait_system_running(state, host.name, boot_timeout)
        seconds = time.monotonic() - started
        report(host.name, f"{system_state} in {seconds:.1f}s")
        return HostBoot(host.name, seconds, system_state, failed)

    with ThreadPoolExecutor(max_workers=min(16, len(state.hosts))) as pool:
        host_keys = dict(pool.map(prepare, state.hosts))
        write_client_config(state, host_keys)
        boots = list(pool.map(boot, state.hosts))
    state.save()
    acme.start(state, report)
    return state, boots


def wait_system_running(state: LabState, host: str, timeout: float) -> tuple[str, list[str]]:
    """Block until systemd finished booting; report failed units rather than hiding them."""
    proc = ssh_run(
        state, host, f"timeout {int(timeout)} systemctl is-system-running --wait", timeout + 10
    )
    system_state = proc.stdout.strip() or "unknown"
    if system_state == "running":
        return system_state, []
    if system_state == "degraded":
        failed = ssh_run(state, host, "systemctl list-units --failed --plain --no-legend")
        return system_state, [line.split()[0] for line in failed.stdout.splitlines() if line]
    raise UserError(
        f"{host}: systemd reports {system_state!r} after {timeout:.0f}s "
        f"({proc.stderr.strip() or 'no error output'}); "
        f"see {state.host_dir(host) / 'console.log'}"
    )


def status(name: str | None = None) -> list[dict[str, Any]]:
    state = load_state(name)
    if state is None:
        return []

    def probe(host: HostState) -> dict[str, Any]:
        root = state.host_dir(host.name) / "root"
        running = container.is_ours(host.pid, root)
        system = "stopped"
        if running:
            try:
                proc = ssh_run(state, host.name, "systemctl is-system-running", timeout=10)
                system = proc.stdout.strip() or "unreachable"
            except Exception:  # a hung host is a status, not a crash
                system = "unreachable"
        return {
            "name": host.name,
            "groups": host.groups,
            "address": host.address,
            "pid": host.pid if running else None,
            "state": system,
        }

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(state.hosts)))) as pool:
        return list(pool.map(probe, state.hosts))


@dataclass
class Leftovers:
    processes: list[int]
    mounts: list[str]
    netns: list[str]
    links: list[str]
    cgroups: list[str]
    directory: bool

    def empty(self) -> bool:
        return not (
            self.processes
            or self.mounts
            or self.netns
            or self.links
            or self.cgroups
            or self.directory
        )


def leftovers(name: str | None = None) -> Leftovers:
    """Everything of this lab still on the machine, found by name, not by the state file."""
    name = lab_name(name)
    directory, prefix = lab_dir(name), kernel_prefix(name)
    return Leftovers(
        processes=container.nspawn_pids_under(directory),
        mounts=[str(m) for m in container.mounts_under(directory)],
        netns=network.lab_netns(prefix),
        links=network.lab_links(prefix),
        cgroups=[str(c) for c in container.cgroup_dirs(prefix) if c.exists()],
        directory=directory.exists(),
    )


def down(name: str | None = None, report: Report = _silent) -> Leftovers:
    """Remove every container, mount, namespace and link of the lab; return what was found."""
    require_root("`mirrorfleet lab down`")
    name = lab_name(name)
    directory = lab_dir(name)
    try:
        state = load_state(name)
    except UserError:
        state = None  # an unreadable state file is exactly the crash case we must survive
    found = leftovers(name)
    pids = set(found.processes)
    if state:
        pids |= {
            h.pid for h in state.hosts if container.is_ours(h.pid, state.host_dir(h.name) / "root")
        }
    if pids:
        report("lab", f"stopping {len(pids)} container(s)")
        container.stop(sorted(pids))
    for mount in container.mounts_under(directory):
        if run(["umount", str(mount)], check=False).returncode != 0:
            run(["umount", "-l", str(mount)], check=False)
    for ns in network.lab_netns(kernel_prefix(name)):
        network.delete_netns(ns)
    for link in network.lab_links(kernel_prefix(name)):
        network.delete_link(link)
    stuck = container.mounts_under(directory)
    if stuck:
        raise UserError(f"could not unmount {', '.join(map(str, stuck))}; nothing deleted")
    container.remove_cgroups(kernel_prefix(name))
    shutil.rmtree(directory, ignore_errors=True)
    return found
