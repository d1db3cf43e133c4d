"""Per-mirror state with hysteresis: one slow probe never moves a mirror, proof does.

- An unreachable probe (timeout, refused, 5xx) counts; `down_after` in a row make
  the mirror down. It says nothing about the tree, so one alone changes nothing.
- A bad answer (forged or missing stamp, a tree that does not match its manifest)
  is proof: the mirror is down at once and is never left fresh for a probe more.
- A down mirror needs `up_after` good probes in a row to come back.
- A mirror behind the head stays where it is for `lag_grace` seconds (measured on
  the monitor's clock from when the monitor first saw a newer head), since every
  publish leaves every mirror behind for the few seconds its sync takes. After
  that it is lagging until it serves the head again, which makes it fresh at once.
- A mirror whose stamp expired (on the monitor's clock) is lagging at once, at any
  serial: no heartbeat reached it, so nothing vouches that its state is current.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from mirrorfleet.probe.observe import Observation

STATES = ("fresh", "lagging", "down")


@dataclass(frozen=True)
class Policy:
    down_after: int = 2
    up_after: int = 2
    lag_grace: float = 10.0


@dataclass(frozen=True)
class Health:
    state: str = "down"
    serial: int = 0  # the last verified serial it served
    ts: int = 0  # that stamp's time (the origin's clock)
    fails: int = 0  # unreachable probes in a row
    oks: int = 0  # good probes in a row while down
    behind_since: float | None = None  # monitor clock: first seen behind the head
    synced_at: float | None = None  # monitor clock: first seen at its current serial
    last: Observation | None = None

    @classmethod
    def unknown(cls, policy: Policy) -> Health:
        """A mirror the monitor knows nothing about: its first good probe brings it up."""
        return cls(oks=policy.up_after - 1)


def judge(health: Health, seen: Observation, head_serial: int, policy: Policy) -> Health:
    """The mirror's next state after one observation."""
    now = seen.at
    if seen.verdict == "bad":
        return replace(health, state="down", fails=0, oks=0, behind_since=None, last=seen)
    if seen.verdict != "ok" or seen.stamp is None:
        fails = health.fails + 1
        state = "down" if fails >= policy.down_after else health.state
        return replace(health, state=state, fails=fails, oks=0, last=seen)
    stamp = seen.stamp
    synced_at = health.synced_at if stamp.serial == health.serial else now
    health = replace(health, serial=stamp.serial, ts=stamp.ts, fails=0, synced_at=synced_at)
    if health.state == "down":
        oks = health.oks + 1
        if oks < policy.up_after:
            return replace(health, oks=oks, last=seen)
        health = replace(health, state="lagging", oks=0)
    if stamp.expired(now):  # frozen: no heartbeat reached it, whatever its serial
        return replace(health, state="lagging", last=seen)
    if stamp.serial >= head_serial:
        return replace(health, state="fresh", behind_since=None, last=seen)
    behind_since = health.behind_since if health.behind_since is not None else now
    late = now - behind_since >= policy.lag_grace
    state = "lagging" if late or health.state == "lagging" else health.state
    return replace(health, state=state, behind_since=behind_since, last=seen)


def head_moved(health: Health, head_serial: int, now: float, policy: Policy) -> Health:
    """The origin published: a mirror now behind starts its grace period without a probe."""
    if health.state == "down" or health.serial >= head_serial or health.behind_since is not None:
        return health
    return replace(health, behind_since=now)


def overdue(health: Health, head_serial: int, now: float, policy: Policy) -> Health:
    """A fresh mirror whose grace ran out while nobody probed it is lagging."""
    if health.state != "fresh" or health.serial >= head_serial or health.behind_since is None:
        return health
    if now - health.behind_since >= policy.lag_grace:
        return replace(health, state="lagging")
    return health
