"""Faults injected into real lab hosts, one at a time, each with the outcome it must
have: the fleet keeps serving, loses nothing, and converges when the fault ends.

One lab of 6 hosts (tests/faults/fault_topology.toml). Steps run in file order; each
undoes its fault in a `finally` and leaves the fleet healthy, which the next step
checks first. Every wait is bounded. What each step saw goes to the JSON report named
by MIRRORFLEET_FAULT_REPORT (docs/RELIABILITY.md is filled from it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from labkit import (
    AS_SERVICE,
    BIN,
    ROOT,
    SYNC_WINDOWS,
    LabRun,
    Reader,
    add_releases,
    changed_operations,
    cmdlines,
    get_json,
    kill_sync_in,
    listed,
    meta,
    monitor_states,
    monitor_status,
    publish,
    served_serial,
    soa_serial,
    unit_pids,
    wheel_path,
)

from mirrorfleet.tree.keys import parse_public_key

pytestmark = pytest.mark.lab

LAB, SUBNET = "fa", "10.239.0.0/24"
MIRRORS = ("mirror1", "mirror2")
BOTH_FRESH = {"mirror1": 10, "mirror2": 10}
PROJECTS = ["demo-00001", "demo-00002"]
INTERVAL = 5.0  # monitor_interval in the topology
SYNC_INTERVAL = 20  # sync_interval: the fallback timer
SETTLE = 30.0  # a change reaching DNS: sync, two good probes, update
RECOVERY = 45.0  # a mirror catching up once a fault ends
AGENT = "mirrorfleet-agent.service"
KILLS = int(os.environ.get("MIRRORFLEET_FAULT_KILLS", "30"))
# A sync whose stage came and went between two looks of the watcher (a delta's
# page stage lasts a few ms) is tried again, up to this many times in a run.
MISSES = max(3, KILLS // 10)
SEED = int(os.environ.get("MIRRORFLEET_FAULT_SEED", "20261127"))


@pytest.fixture(scope="module")
def lab(make_lab) -> LabRun:
    lab = make_lab(LAB, SUBNET)
    lab.up("--topology", str(Path(__file__).with_name("fault_topology.toml")))
    lab.pyinfra("deploy.py")
    if lab.exec("origin", "test", "-e", "/srv/mirror/simple/demo-00004").returncode != 0:
        lab.check("origin", *AS_SERVICE, "demo-content", "/srv/mirror", "--projects", "5")
    publish(lab, "--force")
    return lab


@pytest.fixture(scope="module")
def key(lab):
    secrets = Path(lab.state["ssh_config"]).with_name("secrets")
    return parse_public_key((secrets / "origin-signing.pub").read_text())


@pytest.fixture
def healthy(lab, key) -> int:
    """Every fault starts from a whole fleet: both mirrors at the origin's serial and
    listed fresh on both DNS servers. Returns that serial."""
    serial = served_serial(lab, "origin", key)
    assert serial is not None
    lab.wait_for(lambda: all(served_serial(lab, m, key) == serial for m in MIRRORS), RECOVERY)
    lab.wait_for(lambda: listed(lab) == BOTH_FRESH and listed(lab, "dns2") == BOTH_FRESH, SETTLE)
    return serial


def kill_unit(lab: LabRun, host: str, unit: str) -> list[int]:
    """SIGKILL every process of a unit, as the OOM killer or a crash would."""
    pids = unit_pids(lab, host, unit)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.kill(pid, signal.SIGKILL)
    return pids


def when_syncing(
    lab: LabRun,
    host: str,
    action: Callable[[], None],
    after: threading.Event | None = None,
    timeout: float = 20,
) -> threading.Thread:
    """Run action, in a thread, once the host's agent has an rsync running (a child
    in its unit) and `after` is set; the caller joins the thread."""

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (after is None or after.is_set()) and len(unit_pids(lab, host, AGENT)) > 1:
                action()
                return
            time.sleep(0.002)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def agent_status(lab: LabRun, host: str) -> dict:
    return get_json(f"http://{lab.address(host)}:8873/status")


def metric(lab: LabRun, host: str, name: str, port: int = 8873) -> str:
    """The lines of one metric on an agent (8873) or the monitor (8874)."""
    with urllib.request.urlopen(f"http://{lab.address(host)}:{port}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    return " ".join(line for line in lines if line.startswith(name))


def bad_verdicts(lab: LabRun) -> float:
    """Probes the monitor judged `bad` (a forged stamp, a missing or wrong file)."""
    line = metric(lab, "monitor", 'mirrorfleet_monitor_probes_total{verdict="bad"}', 8874)
    return float(line.split()[-1]) if line else 0.0


# -- the agent killed mid-sync ---------------------------------------------------------

# A pushed release is synced by its change records: those are the windows a ping
# opens. The full sync's windows are aimed at on loopback (test_sync_windows.py).
WINDOWS = SYNC_WINDOWS["delta"]


def test_sigkill_in_every_window_of_a_sync_never_serves_a_torn_tree(
    lab, key, healthy, report
) -> None:
    """Kills aimed in turn at each window of a pushed sync (labkit.SYNC_WINDOWS):
    the changed content fetched, the changed pages staged, and the moves between the
    last rsync and the stamp."""
    rng = random.Random(SEED)
    run = int(time.time())  # new versions on every run, even on a kept lab
    landed: Counter[str] = Counter()
    recoveries: list[float] = []
    states_seen: Counter[str] = Counter()
    bad_before = bad_verdicts(lab)
    with Reader(f"http://{lab.address('mirror1')}", key, PROJECTS) as reader:
        i = 0
        while (aimed := i - landed["no sync seen"]) < KILLS and landed["no sync seen"] <= MISSES:
            window = WINDOWS[aimed % len(WINDOWS)]  # a missed window is aimed at again
            kill: dict[str, str] = {}

            def strike(window: str = window, kill: dict = kill) -> None:
                pids = functools.partial(unit_pids, lab, "mirror1", AGENT)
                kill["where"] = kill_sync_in(window, pids, rng, mode="delta")

            watcher = threading.Thread(target=strike, daemon=True)
            watcher.start()
            releases = {p: f"3.{run}.{i}" for p in PROJECTS}
            # a delta's content stage copies only these files: big enough that the
            # watcher sees it run (a 1 MB one came and went unseen once in 10)
            payload = 4_000_000 if window == "changed content" else 1_000_000
            serial = add_releases(lab, releases, payload=payload)
            reader.published[serial] = [wheel_path(p, v) for p, v in releases.items()]
            watcher.join(30)
            where = kill.get("where", "no sync seen")
            if where == "move" and served_serial(lab, "mirror1", key) == serial:
                where = "after the stamp"
            landed[where] += 1
            started = time.monotonic()
            if where != "no sync seen":  # every process gone, then restarted at once
                lab.wait_for(lambda: not unit_pids(lab, "mirror1", AGENT), 10, interval=0.01)
            lab.check("mirror1", "systemctl", "restart", AGENT)  # and syncs at start
            lab.wait_for(lambda s=serial: served_serial(lab, "mirror1", key) == s, RECOVERY)
            recoveries.append(time.monotonic() - started)
            states_seen[monitor_states(lab)["mirror1"]] += 1
            i += 1
    report["sigkill"] = {
        "kills": KILLS,
        "seed": SEED,
        "landed": dict(landed),
        "reader_rounds": reader.rounds,
        "files_checked": reader.files_checked,
        "torn": reader.torn[:20],
        "recovery_max_s": round(max(recoveries), 2),
        "recovery_median_s": round(sorted(recoveries)[len(recoveries) // 2], 2),
        "monitor_states_seen": dict(states_seen),
        "monitor_bad_verdicts": bad_verdicts(lab) - bad_before,
    }
    assert reader.torn == []
    assert reader.rounds > KILLS and reader.files_checked > 100
    # nor did the monitor's closer look (shard, page, file) ever find proof of a bad tree
    assert report["sigkill"]["monitor_bad_verdicts"] == 0
    assert landed["no sync seen"] <= MISSES, landed
    assert sum(landed.values()) - landed["no sync seen"] == KILLS, landed
    for window in WINDOWS:  # each window was hit on purpose
        assert landed[window] >= KILLS // len(WINDOWS) // 2, landed


# -- the origin unreachable mid-sync ---------------------------------------------------

LINK_CUT = 8.0  # seconds the origin stays away


def cut_link(lab: LabRun) -> None:
    subprocess.run(["ip", "link", "set", f"mf{LAB}-origin", "down"], check=True)


def mend_link(lab: LabRun) -> None:
    subprocess.run(["ip", "link", "set", f"mf{LAB}-origin", "up"], check=True)


def stop_origin_services(lab: LabRun) -> None:
    lab.check("origin", "systemctl", "stop", "rsync", "nginx")


def start_origin_services(lab: LabRun) -> None:
    lab.check("origin", "systemctl", "start", "rsync", "nginx")


@pytest.mark.parametrize(
    ("fault", "inject", "restore"),
    [
        ("link cut", cut_link, mend_link),
        ("services stopped", stop_origin_services, start_origin_services),
    ],
    ids=["veth-down", "rsync-and-nginx-stopped"],
)
def test_origin_lost_mid_sync_keeps_the_last_good_state(
    lab, key, healthy, report, fault: str, inject, restore
) -> None:
    before = healthy
    readers = [Reader(f"http://{lab.address(m)}", key, PROJECTS) for m in MIRRORS]
    for reader in readers:
        reader.start()
    try:
        published = threading.Event()  # cut nothing under the publish command itself
        watcher = when_syncing(lab, "mirror1", lambda: inject(lab), after=published)
        releases = {"demo-00003": f"4.{int(time.time())}.0"}
        serial = add_releases(lab, releases, payload=30_000_000)  # 1.5 s at the lab's bwlimit
        published.set()
        watcher.join(30)
        time.sleep(LINK_CUT)
        during = {m: served_serial(lab, m, key) for m in MIRRORS}
        states_during = monitor_states(lab)
    finally:
        restore(lab)
    started = time.monotonic()
    lab.wait_for(lambda: all(served_serial(lab, m, key) == serial for m in MIRRORS), RECOVERY + 30)
    recovered = time.monotonic() - started
    for reader in readers:
        reader.stop.set()
        reader.join(30)
    report[f"origin {fault}"] = {
        "served_during": during,
        "monitor_during": states_during,
        "recovered_s": round(recovered, 1),
        "reader_rounds": sum(r.rounds for r in readers),
        "torn": [t for r in readers for t in r.torn][:20],
    }
    assert during["mirror1"] == before  # the sync it cut never half-landed
    assert all(r.torn == [] for r in readers)
    assert all(r.rounds > 3 for r in readers)


# -- DNS -------------------------------------------------------------------------------


def publish_errors(lab: LabRun) -> float:
    """DNS publish attempts of the monitor that failed."""
    line = metric(lab, "monitor", 'mirrorfleet_monitor_publishes_total{result="error"}', 8874)
    return float(line.split()[-1]) if line else 0.0


def test_primary_down_secondary_answers_and_no_update_is_lost(lab, key, healthy, report) -> None:
    lab.check("dns1", "systemctl", "stop", "named")
    try:
        serial = add_releases(lab, {"demo-00004": f"5.{int(time.time())}.0"}, payload=1000)
        lab.wait_for(lambda: all(served_serial(lab, m, key) == serial for m in MIRRORS), RECOVERY)
        # the monitor knows the new head, then fails two rounds that must publish it
        lab.wait_for(lambda: monitor_status(lab)["head"]["serial"] == serial, SETTLE)
        failed = publish_errors(lab)
        lab.wait_for(lambda: publish_errors(lab) >= failed + 2, 3 * INTERVAL + 10)
        secondary = listed(lab, "dns2")
        stale_meta = meta(lab, "mirror1", "dns2")
        dns_status = monitor_status(lab)["dns"]
    finally:
        lab.check("dns1", "systemctl", "start", "named")
    started = time.monotonic()
    lab.wait_for(
        lambda: all(f'"serial={serial}"' in meta(lab, m, "dns2") for m in MIRRORS),
        2 * INTERVAL + 10,
    )
    caught_up = time.monotonic() - started
    report["dns primary down"] = {
        "secondary_listed_during": secondary,
        "monitor_dns_error": dns_status["error"],
        "converged_after_restart_s": round(caught_up, 1),
    }
    assert secondary == BOTH_FRESH  # the secondary kept answering
    assert f'"serial={serial}"' not in stale_meta  # the update had not gone out...
    assert dns_status["error"], dns_status  # ...the monitor says why...
    assert f'"serial={serial}"' in meta(lab, "mirror2", "dns2")  # ...and it was not lost


def test_monitor_killed_leaves_dns_alone_and_converges(lab, key, healthy, report) -> None:
    before = soa_serial(lab)
    unit = "mirrorfleet-monitor.service"
    killed = kill_unit(lab, "monitor", unit)
    lab.check("mirror2", "systemctl", "stop", "nginx")
    try:
        assert killed, "the monitor had no process to kill"
        # every PID it had is gone: the kill landed, not a no-op on a stopped unit
        lab.wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in killed), 5)
        time.sleep(3)  # dead for a while: systemd restarts it after RestartSec=5
        soa_while_dead = soa_serial(lab)
        lab.wait_for(lambda: bool(unit_pids(lab, "monitor", unit)), 15)
        reborn = unit_pids(lab, "monitor", unit)
        started = time.monotonic()
        lab.wait_for(lambda: listed(lab, "dns2") == {"mirror1": 10}, SETTLE + 10)
        withdrawn = time.monotonic() - started
    finally:
        lab.check("mirror2", "systemctl", "start", "nginx")
    started = time.monotonic()
    lab.wait_for(lambda: listed(lab, "dns2") == BOTH_FRESH, SETTLE)
    back = time.monotonic() - started
    restarts = lab.check(
        "monitor", "systemctl", "show", "-p", "NRestarts", "mirrorfleet-monitor.service"
    )
    report["monitor killed"] = {
        "soa_unchanged_while_dead": soa_while_dead == before,
        "down_mirror_withdrawn_s": round(withdrawn, 1),
        "returned_s": round(back, 1),
        "restarts": restarts.strip(),
        "killed_pids": len(killed),
    }
    assert not set(reborn) & set(killed)  # a new process, not one the kill missed
    assert soa_while_dead == before
    assert int(restarts.strip().split("=")[1]) >= 1


# -- a full disk -----------------------------------------------------------------------

FULL_DISK_SETUP = """
set -e
used=$(du -sm /srv/mirror | cut -f1)
mkdir -p /run/smalldisk
mount -t tmpfs -o size=$((used + 2))M,mode=755 smalldisk /run/smalldisk
cp -a /srv/mirror/. /run/smalldisk/
mount --bind /run/smalldisk /srv/mirror
systemctl restart mirrorfleet-agent.service
"""
# Every unit that may hold a file open on the small disk stops first: a sandboxed unit's
# mount namespace keeps the bind mount busy, and the agent would stay on a full disk.
FULL_DISK_TEARDOWN = """
set -e
systemctl stop mirrorfleet-sync.timer mirrorfleet-sync.service mirrorfleet-agent.service
umount /srv/mirror
umount /run/smalldisk
systemctl start mirrorfleet-sync.timer mirrorfleet-agent.service
"""


def test_full_disk_fails_cleanly_and_says_so(lab, key, healthy, report) -> None:
    lab.check("mirror2", "sh", "-c", FULL_DISK_SETUP)
    try:
        version = f"6.{int(time.time())}.0"
        serial = add_releases(lab, {"demo-00004": version}, payload=8 * 1024 * 1024)
        lab.wait_for(lambda: served_serial(lab, "mirror1", key) == serial, RECOVERY)
        lab.wait_for(
            lambda: (
                metric(lab, "mirror2", "mirrorfleet_agent_last_sync_ok")
                == ("mirrorfleet_agent_last_sync_ok 0.0")
            ),
            RECOVERY,
        )
        error = (agent_status(lab, "mirror2")["last"] or {}).get("error", "")
        lab.wait_for(lambda: monitor_states(lab)["mirror2"] == "lagging", SETTLE)
        served = served_serial(lab, "mirror2", key)
        page = urllib.request.urlopen(
            f"http://{lab.address('mirror2')}/simple/demo-00004/", timeout=5
        ).read()
    finally:
        lab.check("mirror2", "sh", "-c", FULL_DISK_TEARDOWN)
    report["disk full"] = {
        "agent_status_error": error,
        "served_during": served,
        "monitor": "lagging",
    }
    assert "No space left on device" in error
    assert served == healthy  # the previous state, whole
    assert version.encode() not in page  # no index names the file that did not fit
    # the disk is back (the original tree, under the tmpfs): the next sync catches up
    lab.wait_for(lambda: served_serial(lab, "mirror2", key) == serial, RECOVERY)


# -- a clock an hour fast --------------------------------------------------------------

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
SKEW_UNITS = ("mirrorfleet-agent.service", "mirrorfleet-sync.service")
SKEW_DROPIN = f"""[Service]
Environment=LD_PRELOAD={FAKETIME} FAKETIME=+1h DONT_FAKE_MONOTONIC=1
"""


def skew_clock(lab: LabRun, host: str) -> None:
    lab.check(host, "mkdir", "-p", Path(FAKETIME).parent.as_posix())
    subprocess.run(  # the lab hosts run the same Debian as this machine
        [str(BIN / "mirrorfleet"), "lab", "exec", host, "--", "sh", "-c", f"cat > {FAKETIME}"],
        env=lab.env,
        input=Path(FAKETIME).read_bytes(),
        check=True,
        timeout=60,
    )
    for unit in SKEW_UNITS:
        dropin = f"/etc/systemd/system/{unit}.d/skew.conf"
        lab.check(host, "mkdir", "-p", str(Path(dropin).parent))
        lab.check(host, "sh", "-c", f"cat > {dropin}", input_text=SKEW_DROPIN)
    lab.check(host, "systemctl", "daemon-reload")
    lab.check(host, "systemctl", "restart", AGENT)


def unskew_clock(lab: LabRun, host: str) -> None:
    dropins = [f"/etc/systemd/system/{unit}.d/skew.conf" for unit in SKEW_UNITS]
    lab.check(host, "rm", "-f", *dropins)
    lab.check(host, "systemctl", "daemon-reload")
    lab.check(host, "systemctl", "restart", AGENT)


def test_a_clock_an_hour_fast_changes_no_verdict(lab, key, healthy, report) -> None:
    skew_clock(lab, "mirror1")
    try:
        mirror_time = lab.check(
            "mirror1", "env", f"LD_PRELOAD={FAKETIME}", "FAKETIME=+1h", "date", "+%s"
        )
        ahead = int(mirror_time) - time.time()
        serial = add_releases(lab, {"demo-00001": f"7.{int(time.time())}.0"}, payload=1000)
        # the origin's push carries its own time: an hour off, the agent refuses it...
        lab.wait_for(
            lambda: 'verdict="rejected"' in metric(lab, "mirror1", "mirrorfleet_agent_pings"),
            10,
        )
        journal = lab.check("mirror1", "journalctl", "-u", AGENT, "-n", "30", "--no-pager")
        # ...and the fallback timer syncs it; the monitor judges it by serial alone
        by_timer = lab.wait_for(
            lambda: served_serial(lab, "mirror1", key) == serial, SYNC_INTERVAL + 15
        )
        lab.wait_for(lambda: f'"serial={serial}"' in meta(lab, "mirror1"), SETTLE)
        trace = get_json(f"http://{lab.address('mirror1')}/.mirror/trace/mirror1")
        state = monitor_states(lab)["mirror1"]
        listing = listed(lab)
    finally:
        unskew_clock(lab, "mirror1")
    report["clock +1h"] = {
        "mirror_clock_ahead_s": round(ahead),
        "synced_by_the_timer_after_s": round(by_timer, 1),
        "trace_ts_ahead_s": trace["ts"] - int(time.time()),
        "monitor_state": state,
        "listed": listing,
        "push_refused": "outside the 60s window" in journal,
    }
    assert ahead > 3500  # the skew was real
    assert trace["ts"] - time.time() > 3500  # the mirror's own record says the future
    assert state == "fresh" and listing == BOTH_FRESH
    assert "outside the 60s window" in journal


# -- concurrent deploys ----------------------------------------------------------------


def pyinfra_argv(*extra: str) -> list[str]:
    return [str(BIN / "pyinfra"), "-y", "inventories/lab.py", "deploy.py", *extra]


def agent_process(lab: LabRun, host: str) -> int | None:
    """The agent daemon's own PID on the host (not an rsync it runs)."""
    found = cmdlines(unit_pids(lab, host, AGENT))
    return next((pid for pid, line in found.items() if not line.startswith("rsync ")), None)


def test_a_second_deploy_waits_its_turn_and_a_deploy_restarting_the_agent_tears_nothing(
    lab, key, healthy, report
) -> None:
    lock = Path(lab.state["ssh_config"]).with_name("secrets") / "deploy.lock"
    agent_before = agent_process(lab, "mirror1")
    assert agent_before is not None
    restart_seen: list[bool] = []  # was an rsync running in the last look before it?
    watching = threading.Event()

    def watch_restart() -> None:
        syncing = False
        while not watching.is_set():
            pid = agent_process(lab, "mirror1")
            if pid not in (None, agent_before):
                restart_seen.append(syncing)
                return
            running = cmdlines(unit_pids(lab, "mirror1", AGENT)).values()
            syncing = any(line.startswith("rsync ") for line in running)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch_restart, daemon=True)
    watcher.start()
    with Reader(f"http://{lab.address('mirror1')}", key, PROJECTS) as reader:
        # a changed agent setting: the first deploy must restart the agent
        first = subprocess.Popen(
            pyinfra_argv("--json", "--data", "sync_bwlimit_kbps=19000"),
            env=lab.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            lab.wait_for(lambda: lock.exists() and str(first.pid) in lock.read_text(), 60)
            serial = add_releases(lab, {"demo-00002": f"8.{int(time.time())}.0"}, 20_000_000)
            started = time.monotonic()
            second = lab.run(*pyinfra_argv(), timeout=120)
            second_took = time.monotonic() - started
            first_out, first_err = first.communicate(timeout=300)
        finally:
            watching.set()
            if first.poll() is None:
                first.kill()
                first.wait()
        lab.wait_for(lambda: served_serial(lab, "mirror1", key) == serial, RECOVERY)
    watcher.join(5)
    assert first.returncode == 0, first_err[-3000:]
    changed = changed_operations(json.loads(first_out))
    restored = changed_operations(lab.pyinfra("deploy.py"))
    report["concurrent deploys"] = {
        "second_exit": second.returncode,
        "second_message": (second.stdout + second.stderr).strip().splitlines()[-1],
        "second_took_s": round(second_took, 1),
        "first_exit": first.returncode,
        "agent_restarted_while_syncing": restart_seen[:1],
        "torn": reader.torn[:20],
    }
    assert second.returncode != 0
    assert "another deploy of this fleet is running" in second.stdout + second.stderr
    # the restart ran (changed on mirror1), and a new agent process took over
    assert any(
        "Restart the sync agent on new code or config" in op and "changed on mirror1" in op
        for op in changed
    ), changed
    assert restart_seen, "the agent's PID never changed during the deploy"
    assert reader.torn == [] and reader.rounds > 3
    assert any(
        "Configure the sync agent" in op and "changed on mirror1" in op for op in restored
    ), restored


# -- after every fault -----------------------------------------------------------------


def test_the_fleet_is_whole_after_every_fault(lab, healthy) -> None:
    proc = lab.infra_suite()
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "skipped" not in proc.stdout.splitlines()[-1], proc.stdout[-1500:]
    assert set(monitor_states(lab).values()) == {"fresh"}
