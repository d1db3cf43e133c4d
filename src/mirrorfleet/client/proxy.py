"""`mirrorfleet proxy`: the fleet as one local index that pip and uv never see fail.

pip has no fallback index and uv moves on only on a 401, 403 or 404, so a mirror
that dies or falls behind after `pick` breaks installs until someone picks again.
The proxy keeps the whole candidate list instead (DNS discovery, RFC 2782 order,
the monitor's freshness), and moves each request to the next mirror the moment the
one in use fails it: no answer, a 5xx, a stamp that is expired, behind or rolled
back, or an answer that does not verify (client/verify.py). Only verified bytes
reach the client, so a mirror that alters a page, serves an old one or an old stamp
is skipped and pip never sees its answer.

This module is the proxy's logic, HTTP-free: proxy_server.py puts it on a socket.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import CollectorRegistry, Counter, Gauge

from mirrorfleet.client.choose import MaxLag, dns_verdict
from mirrorfleet.client.discovery import Discovery
from mirrorfleet.client.memory import Memory
from mirrorfleet.client.select import rfc2782_order
from mirrorfleet.client.upstream import (
    REASONS,
    Documents,
    Lru,
    Mirror,
    MirrorFailed,
    Policy,
    Pool,
)
from mirrorfleet.client.verify import Digest, project_of_file, tree_path
from mirrorfleet.errors import MirrorfleetError, UserError
from mirrorfleet.probe.fetch import MAX_PAGE

# (the discovery, the keys to verify with, e.g. a Keyring it refreshed): how the
# proxy asks DNS again; the CLI builds it from the same options `pick` takes
Discover = Callable[[], tuple[Discovery, Sequence[Ed25519PublicKey]]]
KINDS = ("page", "file", "metadata", "index")
OUTCOMES = ("ok", "not-found", "failed")


class AllDown(UserError):
    """No mirror of the fleet could answer a request; the message names each reason."""


@dataclass(frozen=True)
class Settings:
    zone: str
    timeout: float = 4.0  # per socket operation towards a mirror
    max_lag: MaxLag = field(default_factory=MaxLag)
    cooldown: float = 30.0  # seconds a mirror that failed a request is passed over
    stamp_age: float = 2.0  # seconds a verified stamp is trusted before it is read again
    max_file: int = 10 * 1024**3
    min_ttl: float = 5.0  # DNS is asked again at most this often, TTLs or failures aside
    max_ttl: float = 300.0


@dataclass
class Answer:
    """What the proxy hands the client: verified bytes, or a refusal that says why."""

    status: int
    body: bytes | IO[bytes] = b""
    content_type: str = "text/plain; charset=utf-8"
    mirror: str | None = None
    serial: int | None = None
    verified: bool = True
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: int, message: str, **rest) -> Answer:  # type: ignore[no-untyped-def]
        return cls(status, (message.rstrip("\n") + "\n").encode(), **rest)


class Metrics:
    """What Prometheus scrapes from /metrics: one registry per proxy."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mirrorfleet_proxy_requests",
            "Requests answered, by kind and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.failovers = Counter(
            "mirrorfleet_proxy_failovers",
            "Times a mirror failed a request and was set aside for the next, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.verification_failures = Counter(
            "mirrorfleet_proxy_verification_failures",
            "Answers refused because they are not what the origin signed.",
            registry=self.registry,
        )
        self.discoveries = Counter(
            "mirrorfleet_proxy_discoveries",
            "DNS discoveries of the fleet, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.in_use = Gauge(
            "mirrorfleet_proxy_mirror_in_use",
            "1 for the mirror that answered last.",
            ["target"],
            registry=self.registry,
        )
        self.serial = Gauge(
            "mirrorfleet_proxy_serial",
            "The serial of the stamp that proved the last answer.",
            registry=self.registry,
        )
        for reason in REASONS:
            self.failovers.labels(reason)
        for kind in KINDS:
            for outcome in OUTCOMES:
                self.requests.labels(kind, outcome)


class Proxy:
    def __init__(
        self,
        discover: Discover,
        settings: Settings,
        memory: Memory | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings, self._discover, self.memory = settings, discover, memory
        self.rng = rng or random.Random()
        self.metrics = Metrics()
        self.pool = Pool(settings.timeout)
        self.docs = Documents()
        self.files: Lru[str, Digest | None] = Lru(200_000)  # tree path -> expected hash
        self.discovery: Discovery | None = None
        self.keys: Sequence[Ed25519PublicKey] = ()
        self.mirrors: list[Mirror] = []  # the candidates, in the order they are tried
        self.skipped: list[tuple[str, str]] = []  # (target, why DNS rules it out)
        self.problem: str | None = None  # why the last discovery failed
        self.policy = Policy(settings.stamp_age)
        self.current: str | None = None
        self.remembered = 0
        self._next_discovery = 0.0  # monotonic
        self._last_discovery = -float("inf")
        self._state = threading.Lock()
        self._discovering = threading.Lock()

    # -- the fleet -------------------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Ask DNS again when the answers' TTL ran out (or `force`: failures piled
        up), at most every min_ttl; one thread asks, the others go on with the list."""
        now = time.monotonic()
        due = now >= self._next_discovery or (
            force and now - self._last_discovery >= self.settings.min_ttl
        )
        if not due or not self._discovering.acquire(blocking=self.discovery is None):
            return
        try:
            self._last_discovery = now
            try:
                discovery, keys = self._discover()
                mirrors, skipped, policy = self._candidates(discovery)
            except MirrorfleetError as exc:
                self.metrics.discoveries.labels("failed").inc()
                self.problem = str(exc)
                self._next_discovery = now + self.settings.min_ttl
                return
            self.metrics.discoveries.labels("ok").inc()
            ttl = min(max(discovery.ttl, self.settings.min_ttl), self.settings.max_ttl)
            with self._state:
                self.discovery, self.keys, self.policy = discovery, keys, policy
                self.mirrors, self.skipped, self.problem = mirrors, skipped, None
                self._next_discovery = now + ttl
        finally:
            self._discovering.release()

    def _candidates(
        self, discovery: Discovery
    ) -> tuple[list[Mirror], list[tuple[str, str]], Policy]:
        floor = self.memory.serial(self.settings.zone) if self.memory else 0
        head = discovery.head
        if head.serial < floor:
            raise UserError(
                f"the head of {discovery.zone} is serial {head.serial}, older than serial "
                f"{floor} this machine already verified (a replayed or frozen fleet)"
            )
        problem = head.expiry_problem()
        if problem:
            raise UserError(f"the head of {discovery.zone} is not fresh: {problem}")
        known = {m.target: m for m in self.mirrors}
        usable, skipped = [], []
        for listed in discovery.mirrors:
            why = dns_verdict(listed, head, self.settings.max_lag)
            if why:
                skipped.append((listed.target, why))
            else:
                usable.append(listed)
        usable.sort(key=lambda m: (m.priority, m.target))  # answers come in any order
        ordered = rfc2782_order(usable, self.rng)
        mirrors = []
        for listed in ordered:
            kept = known.get(listed.target)
            mirror = Mirror(listed)
            if kept is not None and kept.base == mirror.base:  # what it proved still holds
                mirror.stamp, mirror.read_at = kept.stamp, kept.read_at
                mirror.down_until, mirror.reason = kept.down_until, kept.reason
                mirror.failures = kept.failures
            mirrors.append(mirror)
        # the mirror in use stays first while it is as good as the best: no churn
        best = mirrors[0].listed.priority if mirrors else 0
        for i, mirror in enumerate(mirrors):
            if mirror.target == self.current and mirror.listed.priority == best:
                mirrors.insert(0, mirrors.pop(i))
        return mirrors, skipped, Policy(self.settings.stamp_age, floor, self.settings.max_lag)

    def _usable(self) -> list[Mirror]:
        self.refresh()
        now = time.monotonic()
        ready = [m for m in self.mirrors if m.down_until <= now]
        if not ready:
            self.refresh(force=True)
            ready = [m for m in self.mirrors if m.down_until <= time.monotonic()]
        if not ready:
            raise AllDown(self._all_down_message([]))
        return ready

    def _all_down_message(self, tried: list[tuple[str, str]]) -> str:
        zone = self.settings.zone
        if self.discovery is None:
            return f"the fleet {zone} could not be discovered: {self.problem or 'no answer yet'}"
        now = time.monotonic()
        reasons = list(tried)
        seen = {t for t, _ in tried}
        for mirror in self.mirrors:
            if mirror.target not in seen and mirror.down_until > now:
                left = mirror.down_until - now
                reasons.append((mirror.target, f"{mirror.reason} (set aside for {left:.0f}s more)"))
        reasons += self.skipped
        listed = "; ".join(f"{t}: {w}" for t, w in reasons) or "DNS lists no mirror"
        also = f" (and DNS: {self.problem})" if self.problem else ""
        return f"no mirror of {zone} can answer: {listed}{also}"

    def _failed(self, mirror: Mirror, exc: MirrorFailed) -> None:
        self.metrics.failovers.labels(exc.reason).inc()
        if exc.reason == "unverified":
            self.metrics.verification_failures.inc()
        # a mirror caught mid-sync is fine again once its stamp moves: a short pause
        pause = self.settings.stamp_age if exc.reason == "syncing" else self.settings.cooldown
        with self._state:
            mirror.down_until = time.monotonic() + pause
            mirror.reason, mirror.failures = f"{exc.reason}: {exc}", mirror.failures + 1
            if self.current == mirror.target:
                self.current = None

    def _answered(self, mirror: Mirror, answer: Answer) -> Answer:
        answer.mirror = mirror.target
        with self._state:
            changed = self.current != mirror.target
            self.current = mirror.target
        if changed:
            for other in self.mirrors:
                self.metrics.in_use.labels(other.target).set(0)
            self.metrics.in_use.labels(mirror.target).set(1)
        if answer.serial is not None:
            self.metrics.serial.set(answer.serial)
            if self.memory is not None and answer.serial > self.remembered:
                self.remembered = answer.serial
                self.memory.remember(self.settings.zone, answer.serial)
        return answer

    def _on_each(self, kind: str | None, attempt: Callable[[Mirror], Answer]) -> Answer:
        """The first answer a mirror gives, in order; the next mirror for each failure.
        `kind` labels the request in the metrics (None: not a client's request)."""

        def count(outcome: str) -> None:
            if kind is not None:
                self.metrics.requests.labels(kind, outcome).inc()

        tried: list[tuple[str, str]] = []
        try:
            mirrors = self._usable()
        except AllDown:
            count("failed")
            raise
        for mirror in mirrors:
            try:
                answer = attempt(mirror)
            except MirrorFailed as exc:
                self._failed(mirror, exc)
                tried.append((mirror.target, f"{exc.reason}: {exc}"))
                continue
            count("ok" if answer.status == 200 else "not-found")
            return self._answered(mirror, answer)
        count("failed")
        self.refresh(force=True)  # every candidate failed: maybe DNS knows better now
        raise AllDown(self._all_down_message(tried))

    def prove(self) -> Answer:
        """What would answer now: the first mirror whose stamp and snapshot verify."""

        def attempt(mirror: Mirror) -> Answer:
            assert self.discovery is not None
            stamp = mirror.current(self.pool, self.keys, self.discovery.head, self.policy)
            mirror.snapshot(self.pool, self.docs, stamp, self.keys)
            return Answer(200, serial=stamp.serial)

        return self._on_each(None, attempt)

    # -- what clients ask for --------------------------------------------------

    def page(self, project: str, register: bool = False) -> Answer:
        """simple/<project>/, proven by the chain stamp -> snapshot -> shard -> page.
        The hashes of the files it links are noted when it is checked (or, with
        `register`, again: a file request whose entry the cache let go)."""
        return self._on_each("page", lambda mirror: self._page_from(mirror, project, register))

    def _page_from(self, mirror: Mirror, project: str, register: bool) -> Answer:
        assert self.discovery is not None
        for again in (False, True):
            stamp = mirror.current(self.pool, self.keys, self.discovery.head, self.policy, again)
            try:
                snapshot = mirror.snapshot(self.pool, self.docs, stamp, self.keys)
                projects = mirror.projects(self.pool, self.docs, snapshot, project, self.keys)
                if project not in projects:
                    return Answer.text(
                        404,
                        f"{project} is not on the index at serial {stamp.serial} "
                        "(its signed manifest says so)",
                        serial=stamp.serial,
                    )
                page, fresh = mirror.page(self.pool, self.docs, project, projects[project][1])
            except MirrorFailed as exc:
                if exc.reason != "unverified":
                    raise
                if not again:
                    continue  # maybe a sync moved the tree on under the stamp: read it again
                if mirror.syncing_past(self.pool, project, stamp, self.keys):
                    raise MirrorFailed(
                        f"{mirror.target}: mid-sync past serial {stamp.serial} (its shard "
                        "is newer than its stamp)",
                        "syncing",
                    ) from None
                raise
            if fresh or register:  # ~1 ms per 2,000 files: not on every answer
                for path, digest in page.files.items():
                    self.files.put(path, digest)
            return Answer(
                200,
                page.body,
                "application/vnd.pypi.simple.v1+html",
                serial=stamp.serial,
                headers={"Cache-Control": "max-age=0, must-revalidate"},
            )
        raise AssertionError("unreachable")

    def file(self, url_path: str) -> Answer:
        """A file (or `.metadata`) a verified page links, checked against the hash the
        page names; anything else is refused, never passed on unverified."""
        path = tree_path(url_path)
        kind = "metadata" if path.endswith(".metadata") else "file"
        if path not in self.files:
            project = project_of_file(path)
            if project is not None:
                # its page came from the client's own cache, or before a restart
                self.page(project, register=True)
        if path not in self.files:
            self.metrics.requests.labels(kind, "not-found").inc()
            return Answer.text(404, f"/{path}: not a file any verified page links")
        digest = self.files.get(path)
        if digest is None:
            self.metrics.requests.labels(kind, "not-found").inc()
            return Answer.text(
                404, f"/{path}: its verified page gives no sha256, so it cannot be checked"
            )

        def attempt(mirror: Mirror) -> Answer:
            return Answer(200, mirror.file(self.pool, path, digest, self.settings.max_file))

        return self._on_each(kind, attempt)

    def root_index(self) -> Answer:
        """simple/ itself: nothing signs it (pip and uv never read it), so it is passed
        on as the mirror serves it, and says so."""

        def attempt(mirror: Mirror) -> Answer:
            body = mirror.passthrough(self.pool, "simple/", MAX_PAGE)
            if body is None:
                return Answer.text(404, "this mirror serves no simple/ index")
            return Answer(200, body, "text/html; charset=utf-8", verified=False)

        return self._on_each("index", attempt)

    # -- what operators ask for ------------------------------------------------

    def status(self) -> dict[str, object]:
        now = time.monotonic()
        with self._state:
            discovery, mirrors, current = self.discovery, list(self.mirrors), self.current
        in_use = next((m for m in mirrors if m.target == current), None)

        return {
            "zone": self.settings.zone,
            "head": None if discovery is None else discovery.head.serial,
            "in_use": None
            if in_use is None
            else {
                "target": in_use.target,
                "url": in_use.base,
                "serial": in_use.stamp.serial if in_use.stamp else None,
            },
            "mirrors": [
                {
                    "target": m.target,
                    "url": m.base,
                    "dns_state": m.listed.state,
                    "dns_serial": m.listed.serial,
                    "stamp_serial": m.stamp.serial if m.stamp else None,
                    "set_aside_seconds": max(0, round(m.down_until - now, 1)),
                    "failures": m.failures,
                    "last_failure": m.reason,
                }
                for m in mirrors
            ],
            "skipped": [{"target": t, "why": w} for t, w in self.skipped],
            "failovers": totals(self.metrics.failovers, "reason"),
            "verification_failures": totals(self.metrics.verification_failures).get("", 0),
            "problem": self.problem,
            "warnings": list(discovery.warnings) if discovery else [],
        }

    def close(self) -> None:
        self.pool.close()


def totals(metric: Counter, label: str | None = None) -> dict[str, int]:
    """A counter's values by one label ('' for a counter without labels)."""
    return {
        sample.labels[label] if label else "": int(sample.value)
        for family in metric.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }
