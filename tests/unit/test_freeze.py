"""TUF's indefinite freeze: a mirror, or a DNS answer, that keeps serving an old and
validly signed state. Stamps expire; the origin's heartbeat re-signs the current one,
mirrors take it with one small GET, and every verifier treats an expired stamp as
stale on its own clock, with the reason.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from mirrorfleet.agent import sync
from mirrorfleet.cli import cli
from mirrorfleet.client.choose import NoFreshMirror, choose
from mirrorfleet.client.discovery import Discovery, Listed
from mirrorfleet.config import AgentConfig, OriginConfig, dumps
from mirrorfleet.errors import UserError
from mirrorfleet.monitor.health import Health, Policy, judge
from mirrorfleet.origin.heartbeat import heartbeat
from mirrorfleet.origin.publish import publish
from mirrorfleet.probe.observe import Head, MirrorSpec, observe
from mirrorfleet.tree.keys import load_signing_key
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp, fetch_stamp, read_local_stamp


def keys_of(config: OriginConfig) -> list:
    return [load_signing_key(config.signing_key).public_key()]


def freeze(config: OriginConfig, age: int = 100) -> Stamp:
    """The tree's stamp as it was `age` seconds ago, expired 10 seconds ago: what a
    mirror whose heartbeats stopped still serves."""
    key = load_signing_key(config.signing_key)
    stamp = read_local_stamp(config.tree, keys_of(config))
    now = int(time.time())
    old = Stamp(stamp.serial, now - age, stamp.origin, now - 10, stamp.snapshot, stamp.record)
    (config.tree / STAMP_PATH).write_bytes(old.sign(key))
    return old


def test_a_heartbeat_renews_the_stamp_and_keeps_serial_and_metadata(
    origin_config: OriginConfig,
) -> None:
    publish(origin_config, ping=False)
    before = read_local_stamp(origin_config.tree, keys_of(origin_config))
    time.sleep(1.05)  # stamps count whole seconds
    result = heartbeat(origin_config, ping=False)
    after = read_local_stamp(origin_config.tree, keys_of(origin_config))
    assert (after.serial, after.snapshot, after.record) == (
        before.serial,
        before.snapshot,
        before.record,
    )
    assert after.ts > before.ts and after.expires == after.ts + origin_config.stamp_lifetime
    assert (result.serial, result.ts, result.expires) == (after.serial, after.ts, after.expires)
    assert result.warnings == []


def test_a_heartbeat_dry_run_writes_nothing_and_an_unpublished_tree_is_an_error(
    origin_config: OriginConfig,
) -> None:
    with pytest.raises(UserError, match="has no stamp yet"):
        heartbeat(origin_config, ping=False)
    publish(origin_config, ping=False)
    raw = (origin_config.tree / STAMP_PATH).read_bytes()
    time.sleep(1.05)
    assert heartbeat(origin_config, ping=False, dry_run=True).dry_run
    assert (origin_config.tree / STAMP_PATH).read_bytes() == raw


def test_the_heartbeat_command_says_what_it_signed(
    origin_config: OriginConfig, tmp_path: Path
) -> None:
    config = tmp_path / "origin.toml"
    config.write_text(dumps(origin_config))
    before = ["origin", "heartbeat", "--config", str(config), "--no-ping"]
    assert CliRunner().invoke(cli, before).exit_code == 1  # nothing published: an error
    waiting = CliRunner().invoke(cli, [*before, "--if-published", "--json"])
    assert waiting.exit_code == 0 and json.loads(waiting.output)["published"] is False
    publish(origin_config, ping=False)
    result = CliRunner().invoke(
        cli, ["origin", "heartbeat", "--config", str(config), "--json", "--no-ping"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    stamp = read_local_stamp(origin_config.tree, keys_of(origin_config))
    assert (data["serial"], data["expires"]) == (1, stamp.expires)


def test_the_agent_takes_a_heartbeat_without_rsync(
    agent_config: AgentConfig, origin_config: OriginConfig, upstream
) -> None:
    sync.sync_once(agent_config)
    time.sleep(1.05)
    heartbeat(origin_config, ping=False)
    upstream.stop_rsync()  # any rsync run would now fail
    result = sync.sync_once(agent_config)
    assert (result.status, result.serial, result.bytes) == ("renewed", 1, 0)
    served = (agent_config.tree / STAMP_PATH).read_bytes()
    assert served == (origin_config.tree / STAMP_PATH).read_bytes()
    assert sync.sync_once(agent_config).status == "unchanged"


def test_the_agent_reports_an_expired_stamp_and_its_clock_decides_nothing(
    agent_config: AgentConfig, origin_config: OriginConfig, add_project
) -> None:
    """An agent whose clock is wrong must keep syncing (the fault suite's clock an hour
    fast): it copies the newest state upstream signed and says the stamp is stale;
    the monitor and clients, on their own clocks, decide whether anyone uses it."""
    sync.sync_once(agent_config)
    add_project(origin_config.tree, "proj9", "1.0")
    publish(origin_config, ping=False)
    frozen = freeze(origin_config)
    result = sync.sync_once(agent_config)
    assert (result.status, result.serial) == ("synced", 2)
    assert "stamp of serial 2 expired at" in result.stale
    assert read_local_stamp(agent_config.tree, keys_of(origin_config)) == frozen


def test_the_monitor_judges_a_frozen_mirror_stale_at_the_heads_serial(
    upstream, origin_config: OriginConfig
) -> None:
    publish(origin_config, ping=False)
    keys = keys_of(origin_config)
    base = upstream.http_url.rstrip("/") + "/"
    head_stamp, raw = fetch_stamp(base, keys)
    frozen = freeze(origin_config)
    spec = MirrorSpec(label="m1", target="m1.example.net", url=base)
    seen = observe(spec, Head(head_stamp, raw), keys, 5, spot_checks=0, rng=random.Random(0))
    assert seen.verdict == "ok" and seen.stamp == frozen
    assert "stamp of serial 1 expired at" in (seen.error or "")
    fresh = Health(state="fresh", serial=1, ts=frozen.ts)
    judged = judge(fresh, seen, head_stamp.serial, Policy())
    assert judged.state == "lagging"  # at the head's serial, yet stale: no grace
    renewed = judge(fresh, replace(seen, stamp=head_stamp), 1, Policy())
    assert renewed.state == "fresh"


def test_the_client_passes_over_a_frozen_mirror_dns_still_calls_fresh(
    upstream, origin_config: OriginConfig
) -> None:
    publish(origin_config, ping=False)
    keys = keys_of(origin_config)
    base = upstream.http_url.rstrip("/") + "/"
    head = fetch_stamp(base, keys)[0]
    mirror = Listed("m1.example.net", 443, 10, 100, "fresh", 1, head.ts, head.ts, base)
    assert choose(Discovery("mirrors.test.", head, (mirror,)), keys).stamp == head
    freeze(origin_config)
    with pytest.raises(NoFreshMirror, match=r"m1\.example\.net: stamp of serial 1 expired at"):
        choose(Discovery("mirrors.test.", head, (mirror,)), keys)


def test_the_client_refuses_an_expired_head(upstream, origin_config: OriginConfig) -> None:
    """A replayed DNS answer: the head verifies, but nothing vouches for it now."""
    publish(origin_config, ping=False)
    keys = keys_of(origin_config)
    base = upstream.http_url.rstrip("/") + "/"
    frozen = freeze(origin_config)
    mirror = Listed("m1.example.net", 443, 10, 100, "fresh", 1, frozen.ts, frozen.ts, base)
    with pytest.raises(NoFreshMirror, match=r"the head of mirrors\.test\. is not fresh: stamp"):
        choose(Discovery("mirrors.test.", frozen, (mirror,)), keys)
