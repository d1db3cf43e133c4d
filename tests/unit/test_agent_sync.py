"""The sync agent against a real rsync daemon and HTTP server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.agent import daemon, sync
from mirrorfleet.agent.full import changed_files
from mirrorfleet.agent.rsync import rsync_argv
from mirrorfleet.config import AgentConfig, OriginConfig
from mirrorfleet.notify.ping import send_ping
from mirrorfleet.origin.publish import publish
from mirrorfleet.testing.loopback import free_port
from mirrorfleet.tree.keys import read_secret
from mirrorfleet.tree.stamp import Stamp


def listing(tree: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(tree)): p.read_bytes()
        for p in tree.rglob("*")
        if p.is_file() and ".mirror/trace/" not in str(p)
    }


def test_first_sync_copies_the_tree_and_stamp(agent_config: AgentConfig, origin_config) -> None:
    result = sync.sync_once(agent_config)
    assert (result.status, result.serial, result.previous) == ("synced", 1, None)
    assert listing(agent_config.tree) == listing(origin_config.tree)
    trace = json.loads((agent_config.tree / ".mirror/trace/mirror1").read_text())
    assert trace["serial"] == 1 and trace["upstream"] == agent_config.upstream_http
    assert result.bytes > 0


def test_unchanged_stamp_means_no_rsync_at_all(agent_config: AgentConfig, upstream) -> None:
    sync.sync_once(agent_config)
    upstream.stop_rsync()  # any rsync run would now fail
    assert sync.sync_once(agent_config).status == "unchanged"


def test_new_serial_brings_new_files_and_deletes_old(
    agent_config: AgentConfig, origin_config: OriginConfig, add_project
) -> None:
    sync.sync_once(agent_config)
    add_project(origin_config.tree, "proj9", "1.0")
    for path in (origin_config.tree / "packages/proj0").iterdir():
        path.unlink()
    (origin_config.tree / "packages/proj0").rmdir()
    (origin_config.tree / "simple/proj0/index.html").unlink()
    (origin_config.tree / "simple/proj0").rmdir()
    assert publish(origin_config).serial == 2
    result = sync.sync_once(agent_config)
    assert (result.status, result.previous, result.serial) == ("synced", 1, 2)
    assert listing(agent_config.tree) == listing(origin_config.tree)
    assert not (agent_config.tree / "packages/proj0").exists()


def test_forged_stamp_keeps_the_old_state(agent_config: AgentConfig, origin_config) -> None:
    sync.sync_once(agent_config)
    before = listing(agent_config.tree)
    forged = Stamp.new(5, "origin").sign(Ed25519PrivateKey.generate())
    (origin_config.tree / ".mirror/stamp.json").write_bytes(forged)
    result = sync.sync_once(agent_config)
    assert result.status == "error" and "rejected" in result.error
    assert listing(agent_config.tree) == before


def test_upstream_going_back_is_refused(
    agent_config: AgentConfig, origin_config: OriginConfig
) -> None:
    old_stamp = (origin_config.tree / ".mirror/stamp.json").read_bytes()
    publish(origin_config, force=True)
    assert sync.sync_once(agent_config).serial == 2
    (origin_config.tree / ".mirror/stamp.json").write_bytes(old_stamp)
    result = sync.sync_once(agent_config)
    assert result.status == "error" and "refusing to go back" in result.error
    assert result.serial == 2


def test_before_the_first_publish_the_agent_waits(
    agent_config: AgentConfig, origin_config: OriginConfig
) -> None:
    stamp = origin_config.tree / ".mirror/stamp.json"
    saved = stamp.read_bytes()
    stamp.unlink()
    assert sync.sync_once(agent_config).status == "waiting"
    stamp.write_bytes(saved)
    assert sync.sync_once(agent_config).status == "synced"
    stamp.unlink()  # an upstream that loses its stamp after publishing is an error
    result = sync.sync_once(agent_config)
    assert result.status == "error" and "no stamp yet" in result.error


def test_unreachable_upstream_is_an_error_not_a_crash(agent_config: AgentConfig, upstream) -> None:
    sync.sync_once(agent_config)
    upstream.stop_http()
    result = sync.sync_once(agent_config)
    assert result.status == "error" and "unreachable" in result.error
    assert result.serial == 1


def test_unreachable_rsync_fails_cleanly(agent_config: AgentConfig, upstream) -> None:
    upstream.stop_rsync()
    result = sync.sync_once(agent_config)
    assert result.status == "error" and "rsync stage 1 (scan) failed" in result.error
    assert not (agent_config.tree / ".mirror/stamp.json").exists()


def test_lock_admits_one_sync(agent_config: AgentConfig) -> None:
    with (
        sync.sync_lock(agent_config.state_dir, wait=False) as first,
        sync.sync_lock(agent_config.state_dir, wait=False) as second,
    ):
        assert (first, second) == (True, False)


def test_pings_during_a_sync_make_exactly_one_follow_up(
    agent_config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start-up sync is held until all five pings have been answered (the agent
    takes a ping before it replies 202), so every ping lands mid-sync whatever the
    machine's speed; released, it must make one follow-up sync, then go idle."""
    calls: list[float] = []
    first_started, release = threading.Event(), threading.Event()

    def held_sync(config: AgentConfig) -> sync.SyncResult:
        calls.append(time.monotonic())
        if len(calls) == 1:
            first_started.set()
            assert release.wait(30), "the test never released the start-up sync"
        return sync.SyncResult(status="unchanged", serial=1, finished=time.time())

    monkeypatch.setattr(daemon, "sync_once", held_sync)
    config = replace(agent_config, listen=f"127.0.0.1:{free_port()}")
    agent, server, loop = daemon.serve(config)
    base = f"http://127.0.0.1:{config.listen_address[1]}"

    def status() -> dict:
        with urllib.request.urlopen(f"{base}/status", timeout=10) as response:
            return json.loads(response.read())

    def idle_after(syncs: int) -> bool:
        """The agent's own word, asked after the `syncs`-th sync began, that it is
        neither syncing nor has one pending: that sync is over and nothing follows."""
        if len(calls) < syncs:
            return False
        now = status()
        return not now["syncing"] and not now["pending"]

    def wait_until(predicate, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"not true within {timeout}s"
            time.sleep(0.01)

    try:
        assert first_started.wait(5)  # the start-up sync is running, and held
        secret = read_secret(config.ping_secret)
        statuses = [
            send_ping(f"{base}/ping", secret, {"event": "publish", "n": i}) for i in range(5)
        ]
        assert statuses == [202] * 5
        assert status()["syncing"] and len(calls) == 1  # all five landed mid-sync
        release.set()
        wait_until(lambda: idle_after(2))
        assert len(calls) == 2, "five pings during one sync must make exactly one follow-up"
        # a ping once idle makes exactly one more: the idle above was real
        assert send_ping(f"{base}/ping", secret, {"event": "publish", "n": 5}) == 202
        wait_until(lambda: idle_after(3))
        assert len(calls) == 3
        assert send_ping(f"{base}/ping", b"x" * 64, {"event": "publish"}) == 401
        metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        assert 'mirrorfleet_agent_pings_total{verdict="accepted"} 6.0' in metrics
        assert 'mirrorfleet_agent_pings_total{verdict="rejected"} 1.0' in metrics
    finally:
        release.set()
        agent.stop()
        server.shutdown()
        server.server_close()
        loop.join(5)


def _same_second_as(path: Path, copy: Path) -> None:
    """Give path the whole second of copy's mtime, with other nanoseconds."""
    ns = copy.stat().st_mtime_ns
    second = ns - ns % 1_000_000_000
    os.utime(path, ns=(second + (ns + 1) % 1_000_000_000,) * 2)


def test_a_walk_sees_a_page_and_shard_rewritten_at_the_same_size_within_the_second(
    agent_config: AgentConfig, origin_config: OriginConfig
) -> None:
    """Two publishes in one second can leave a page and its shard at their sizes. CI
    once saw a walk serve serial 8 with serial 7's shard: at one second, rsync's
    quick check had called the two the same."""
    sync.sync_once(agent_config)
    page = origin_config.tree / "simple/proj1/index.html"
    page.write_bytes(page.read_bytes().replace(b"<body>", b"<BODY>"))
    publish(origin_config, ping=False)
    shards = (origin_config.tree / ".mirror/manifest").iterdir()
    shard = next(p for p in shards if b'"proj1"' in p.read_bytes())
    for path in (page, shard):
        copy = agent_config.tree / path.relative_to(origin_config.tree)
        assert copy.stat().st_size == path.stat().st_size
        assert copy.read_bytes() != path.read_bytes()
        _same_second_as(path, copy)
    result = sync.sync_once(agent_config, full=True)
    assert (result.status, result.mode) == ("synced", "full"), result.error
    assert listing(agent_config.tree) == listing(origin_config.tree)


def test_after_a_delta_a_walk_copies_no_record_again(
    agent_config: AgentConfig, origin_config: OriginConfig, add_project
) -> None:
    """Records reach a mirror over HTTP, whose Last-Modified holds whole seconds;
    the origin writes them at whole seconds, so the nanosecond quick check of the
    audit's walk finds them equal."""
    sync.sync_once(agent_config)
    for version in ("2.0", "3.0"):
        add_project(origin_config.tree, "proj1", version)
        publish(origin_config, ping=False)
        assert sync.sync_once(agent_config).mode == "delta"
    argv = rsync_argv(agent_config, "list")
    out = subprocess.run(argv, capture_output=True, check=True).stdout
    assert [p for p in changed_files(out) if "/trace/" not in p] == []
