"""Which listed mirror to use: fresh enough by DNS, then proven by its own stamp.

DNS says what the monitor saw; the client still fetches the chosen mirror's
signed stamp, so a mirror can never be used on the strength of a serial it has no
signed stamp for, and a stamp older than allowed never passes as fresh.
"""

from __future__ import annotations

import random
import re
import time
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urljoin

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet import web
from mirrorfleet.client.discovery import Discovery, Listed
from mirrorfleet.client.projects import (
    MAX_BEHIND,
    ChangesUnavailable,
    changed_since,
    fetch_changes,
    wanted,
)
from mirrorfleet.client.select import rfc2782_order
from mirrorfleet.errors import UserError
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp, StampUnavailable, fetch_stamp

LAG_RE = re.compile(r"^(\d+)([smhd]?)$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class NoFreshMirror(UserError):
    """Every listed mirror is stale, down, or failed its check."""


class RolledBack(UserError):
    """The fleet's head is older than a serial this machine already verified."""


@dataclass(frozen=True)
class MaxLag:
    """How far behind the head a mirror may be: None/None means "fresh, as the monitor
    judged it"; a number of serials; or seconds between the stamps (origin's clock)."""

    serials: int | None = None
    seconds: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> MaxLag:
        if text is None:
            return cls()
        match = LAG_RE.match(text.strip())
        if not match:
            raise UserError(
                f"--max-lag {text!r}: give serials (e.g. 2) or a time (e.g. 300s, 5m, 1h)"
            )
        number, unit = int(match.group(1)), match.group(2)
        return cls(seconds=number * UNITS[unit]) if unit else cls(serials=number)

    def allows(self, serial: int, ts: int, head: Stamp) -> bool:
        if self.seconds is not None:
            return serial >= head.serial or head.ts - ts <= self.seconds
        return head.serial - serial <= (self.serials or 0)


def dns_verdict(mirror: Listed, head: Stamp, max_lag: MaxLag) -> str | None:
    """Why DNS alone rules this mirror out; None when it is a candidate."""
    if mirror.problem:
        return mirror.problem
    assert mirror.serial is not None and mirror.ts is not None
    if mirror.state == "down":
        return "down"
    if max_lag == MaxLag():
        return None if mirror.state == "fresh" else f"{mirror.state} at serial {mirror.serial}"
    if not max_lag.allows(mirror.serial, mirror.ts, head):
        return f"serial {mirror.serial} is {head.serial - mirror.serial} behind the head"
    return None


def stamp_verdict(stamp: Stamp, mirror: Listed, head: Stamp, max_lag: MaxLag) -> str | None:
    """Why the mirror's own signed stamp rules it out; None when it passes."""
    if stamp.serial < (mirror.serial or 0):
        return f"its stamp says serial {stamp.serial}, DNS says {mirror.serial}"
    if max_lag == MaxLag():
        return None  # the monitor's verdict, backed by a stamp at least as new
    if not max_lag.allows(stamp.serial, stamp.ts, head):
        return f"its stamp is serial {stamp.serial}, {head.serial - stamp.serial} behind"
    return None


@dataclass(frozen=True)
class Choice:
    mirror: Listed
    stamp: Stamp
    fallbacks: tuple[Listed, ...]  # the next candidates, in order
    skipped: tuple[tuple[str, str], ...]  # (target, why)
    warnings: tuple[str, ...] = ()  # what discovery skipped on the way


class ProjectView:
    """What changed after each serial a candidate is at, fetched once per pick."""

    def __init__(
        self,
        discovery: Discovery,
        projects: frozenset[str],
        keys: Sequence[Ed25519PublicKey],
        timeout: float,
    ) -> None:
        self.discovery, self.projects = discovery, projects
        self.keys, self.timeout = keys, timeout
        self.changes: dict[int, frozenset[str]] | None = None
        self.error: str | None = None

    def verdict(self, serial: int, candidates: Sequence[Listed]) -> str | None:
        """Why a mirror at `serial` is not current for the projects; None when it is."""
        head = self.discovery.head.serial
        if serial >= head:
            return None
        if head - serial > MAX_BEHIND:
            return f"{head - serial} serials behind (per-project checks reach {MAX_BEHIND})"
        if self.changes is None and self.error is None:
            self._load(candidates)
        if self.changes is None:
            return f"change records unavailable: {self.error}"
        touched = changed_since(self.changes, serial, head) & self.projects
        return f"{', '.join(sorted(touched))} changed since serial {serial}" if touched else None

    def _load(self, candidates: Sequence[Listed]) -> None:
        head = self.discovery.head.serial
        oldest = max(head - MAX_BEHIND, min((m.serial or 0) for m in candidates))
        sources = [m for m in candidates if m.serial == head and m.state == "fresh"]
        for source in sources:
            try:
                self.changes = fetch_changes(
                    str(source.url), self.discovery.head, oldest, self.keys, self.timeout
                )
                return
            except ChangesUnavailable as exc:
                self.error = f"{source.target}: {exc}"
        self.error = self.error or "no mirror at the head to read them from"


def choose(
    discovery: Discovery,
    keys: Sequence[Ed25519PublicKey],
    max_lag: MaxLag = MaxLag(),
    rng: random.Random | None = None,
    timeout: float = 5.0,
    projects: Iterable[str] = (),
    probe: int = 0,
    more: Callable[[Discovery], Discovery] | None = None,
    floor: int = 0,
) -> Choice:
    """RFC 2782 order over the candidates, the first whose stamp proves it fresh.

    projects: fresh enough means current for these, even when behind the head.
    probe: time a HEAD request to the first `probe` candidates of the best priority
    and try the fastest first (reflector's rate sort, bounded to a few requests).
    more: reads the next pending mirrors when every one read so far fails.
    floor: the highest serial this machine verified before (client/memory.py): an
    older head is a rollback, and an older mirror is never chosen.
    """
    if discovery.head.serial < floor:
        raise RolledBack(
            f"the head of {discovery.zone} is serial {discovery.head.serial}, older than "
            f"serial {floor} this machine already verified: a replayed or frozen fleet "
            "(if it was rebuilt from scratch, run again with --forget)"
        )
    problem = discovery.head.expiry_problem()
    if problem:
        raise NoFreshMirror(f"the head of {discovery.zone} is not fresh: {problem}")
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    rng = rng or random.Random()
    while True:
        fresh = [m for m in discovery.mirrors if m.target not in seen]
        seen.update(m.target for m in fresh)
        ordered = _candidates(discovery, fresh, keys, max_lag, rng, timeout, projects, skipped)
        if probe > 0 and ordered:
            ordered = by_latency(ordered, probe, timeout)
        for i, mirror in enumerate(ordered):
            stamp, why = _stamp_check(
                mirror, discovery, keys, max_lag, timeout, bool(projects), floor
            )
            if stamp is None or why:
                skipped.append((mirror.target, why or "no stamp"))
                continue
            fallbacks = tuple(ordered[i + 1 :])
            return Choice(mirror, stamp, fallbacks, tuple(skipped), discovery.warnings)
        if more is None or not discovery.pending:
            break
        discovery = more(discovery)
    reasons = "; ".join(f"{t}: {w}" for t, w in skipped) or "no mirror is listed"
    raise NoFreshMirror(f"no fresh mirror in {discovery.zone} ({reasons})")


def _candidates(
    discovery: Discovery,
    mirrors: Sequence[Listed],
    keys: Sequence[Ed25519PublicKey],
    max_lag: MaxLag,
    rng: random.Random,
    timeout: float,
    projects: Iterable[str],
    skipped: list[tuple[str, str]],
) -> list[Listed]:
    """The mirrors DNS does not rule out, in pick order."""
    view = ProjectView(discovery, wanted(projects), keys, timeout) if projects else None
    usable = [m for m in discovery.mirrors if not m.problem and m.state != "down"]
    candidates = []
    for mirror in mirrors:
        if view is not None and mirror in usable:
            why = view.verdict(mirror.serial or 0, usable)
        else:
            why = dns_verdict(mirror, discovery.head, max_lag)
        if why:
            skipped.append((mirror.target, why))
        else:
            candidates.append(mirror)
    if discovery.ordered:
        return candidates  # discovery drew the RFC 2782 order already
    # servers rotate the order of an answer; sorting first makes a seed reproducible
    candidates.sort(key=lambda m: (m.priority, m.target))
    return rfc2782_order(candidates, rng)


def _stamp_check(
    mirror: Listed,
    discovery: Discovery,
    keys: Sequence[Ed25519PublicKey],
    max_lag: MaxLag,
    timeout: float,
    per_project: bool,
    floor: int = 0,
) -> tuple[Stamp | None, str | None]:
    """The mirror's own verified stamp, and why it rules the mirror out (None: it passes)."""
    try:
        stamp = fetch_stamp(str(mirror.url), keys, timeout)[0]
    except StampUnavailable as exc:
        return None, str(exc)
    allowed = MaxLag(serials=MAX_BEHIND) if per_project else max_lag
    return stamp, stamp_problem(stamp, mirror, discovery.head, allowed, floor)


def stamp_problem(
    stamp: Stamp, mirror: Listed, head: Stamp, max_lag: MaxLag, floor: int = 0
) -> str | None:
    """Why a mirror's verified stamp rules it out, expiry and rollback included; None
    when it passes. The one rule for `pick` and for every request of the proxy."""
    problem = stamp.expiry_problem()
    if problem:  # DNS may still say fresh: the monitor's verdict, or a replayed answer
        return problem
    if stamp.serial < floor:
        return f"its stamp is serial {stamp.serial}, older than serial {floor} verified before"
    return stamp_verdict(stamp, mirror, head, max_lag)


def by_latency(ordered: Sequence[Listed], count: int, timeout: float) -> list[Listed]:
    """The first `count` of the best priority, fastest HEAD first; unreachable ones last."""
    best = ordered[0].priority
    head = [m for m in ordered[:count] if m.priority == best]

    def timed(mirror: Listed) -> float:
        request = urllib.request.Request(urljoin(str(mirror.url), STAMP_PATH), method="HEAD")
        started = time.monotonic()
        try:
            with web.urlopen(request, timeout=timeout):
                return time.monotonic() - started
        except web.READ_ERRORS:
            return float("inf")

    with ThreadPoolExecutor(max_workers=len(head)) as pool:
        seconds = dict(zip((m.target for m in head), pool.map(timed, head), strict=True))
    ranked = sorted(head, key=lambda m: seconds[m.target])
    return [*ranked, *ordered[len(head) :]]
