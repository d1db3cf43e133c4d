"""Hysteresis: one slow probe never moves a mirror; proof does, at once."""

from __future__ import annotations

import pytest

from mirrorfleet.monitor.health import Health, Policy, head_moved, judge, overdue
from mirrorfleet.probe.observe import Observation
from mirrorfleet.tree.stamp import Stamp

POLICY = Policy(down_after=2, up_after=2, lag_grace=10)
HEAD = 5


def seen(verdict: str, serial: int | None = HEAD, at: float = 1000.0) -> Observation:
    stamp = Stamp(serial, 100 + serial, "origin", expires=2**32) if serial is not None else None
    return Observation("m1", verdict, stamp, None if verdict == "ok" else "boom", at, 0.01)


def run(health: Health, *observations: Observation, head: int = HEAD) -> Health:
    for observation in observations:
        health = judge(health, observation, head, POLICY)
    return health


FRESH = Health(state="fresh", serial=HEAD, ts=105)


def test_one_unreachable_probe_changes_nothing() -> None:
    assert run(FRESH, seen("unreachable", None)).state == "fresh"


def test_two_unreachable_probes_in_a_row_make_it_down() -> None:
    assert run(FRESH, seen("unreachable", None), seen("unreachable", None)).state == "down"


def test_a_good_probe_between_failures_resets_the_count() -> None:
    health = run(FRESH, seen("unreachable", None), seen("ok"), seen("unreachable", None))
    assert health.state == "fresh" and health.fails == 1


@pytest.mark.parametrize("serial", [None, HEAD], ids=["forged-stamp", "tree-mismatch"])
def test_a_bad_answer_is_down_at_once(serial: int | None) -> None:
    assert run(FRESH, seen("bad", serial)).state == "down"


def test_a_down_mirror_needs_two_good_probes_to_return() -> None:
    down = Health(state="down", serial=HEAD)
    once = run(down, seen("ok"))
    assert once.state == "down"
    assert run(once, seen("ok")).state == "fresh"


def test_an_unknown_mirror_comes_up_on_its_first_good_probe() -> None:
    assert run(Health.unknown(POLICY), seen("ok")).state == "fresh"


def test_a_recovering_mirror_behind_the_head_is_lagging() -> None:
    assert run(Health(state="down"), seen("ok", HEAD - 1), seen("ok", HEAD - 1)).state == "lagging"


def test_behind_within_the_grace_stays_fresh_then_lags() -> None:
    health = run(FRESH, seen("ok", HEAD, at=990.0), head=HEAD)
    health = head_moved(health, HEAD + 1, now=1000.0, policy=POLICY)
    assert run(health, seen("ok", HEAD, at=1009.0), head=HEAD + 1).state == "fresh"
    assert run(health, seen("ok", HEAD, at=1010.0), head=HEAD + 1).state == "lagging"


def test_a_lagging_mirror_at_the_head_is_fresh_at_once() -> None:
    lagging = Health(state="lagging", serial=HEAD - 1, behind_since=0.0)
    health = run(lagging, seen("ok", HEAD))
    assert health.state == "fresh" and health.behind_since is None


def test_overdue_demotes_without_a_probe_only_after_the_grace() -> None:
    health = head_moved(FRESH, HEAD + 1, now=1000.0, policy=POLICY)
    assert overdue(health, HEAD + 1, 1005.0, POLICY).state == "fresh"
    assert overdue(health, HEAD + 1, 1010.0, POLICY).state == "lagging"
    assert overdue(FRESH, HEAD, 5000.0, POLICY).state == "fresh"


def test_last_sync_is_when_the_monitor_first_saw_the_serial() -> None:
    health = run(FRESH, seen("ok", HEAD + 1, at=2000.0), seen("ok", HEAD + 1, at=2030.0))
    assert health.synced_at == 2000.0
