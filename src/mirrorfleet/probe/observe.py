"""Look at every mirror the way a client would, and turn that into the fleet state
the publisher writes to DNS.

A probe fetches the origin's stamp and each mirror's stamp over HTTP, verifies
their signatures with the pinned keys, and spot-checks a few of the mirror's files
against the signed manifest. A mirror is fresh at the origin's serial, lagging
behind it, and down when it does not answer, serves a stamp that does not verify,
or a tree that does not match: a mirror's own claim never makes it fresh.
"""

from __future__ import annotations

import json
import logging
import random
import time
import tomllib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet import web
from mirrorfleet.config import build
from mirrorfleet.errors import UserError
from mirrorfleet.probe.fetch import SpotCheckFailed, Unreachable
from mirrorfleet.probe.spotcheck import Candidate, candidates_from_records, spot_check
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.stamp import Stamp, StampUnavailable, fetch_stamp
from mirrorfleet.tree.trust import Keyring, KeysUnavailable
from mirrorfleet.zone.records import MirrorRecord, check_label

log = logging.getLogger("mirrorfleet.probe")
MAX_PARALLEL = 32
SPOT_CHECKS = 2
MAX_SPOT_FILE = 4 * 1024 * 1024


@dataclass(frozen=True)
class MirrorSpec:
    """A mirror as the inventory describes it."""

    label: str
    target: str
    url: str
    port: int = 80
    weight: int = 100
    region: str = ""
    tier: int = 1  # 1: syncs from the origin; 2: from a tier-1 mirror; ...
    upstream: str = ""


@dataclass(frozen=True)
class FleetConfig:
    origin_url: str
    public_keys: tuple[str, ...]  # the pinned roots (or the origin's own key)
    mirrors: tuple[MirrorSpec, ...]
    timeout: int = 5
    root_threshold: int = 1

    @property
    def keys(self) -> Keyring:
        """One keyring for the config's life (not a field: never written to fleet.toml):
        the keys document it adopted, and so its floor, outlive any one probe round."""
        ring = self.__dict__.get("_keyring")
        if ring is None:
            ring = Keyring.pinned(self.public_keys, self.root_threshold)
            object.__setattr__(self, "_keyring", ring)
        return ring


def load_fleet_config(path: Path) -> FleetConfig:
    where = str(path)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"fleet config {path} is unreadable: {exc}") from None
    tables = raw.pop("mirrors", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UserError(f"{where}: mirrors must be an array of tables ([[mirrors]])")
    mirrors = tuple(build(t, MirrorSpec, f"{where}: mirrors[{i}]") for i, t in enumerate(tables))
    for i, mirror in enumerate(mirrors):
        check_label(mirror.label, f"{where}: mirrors[{i}] label")
    labels = [m.label for m in mirrors]
    if len(set(labels)) != len(labels):
        raise UserError(f"{where}: two mirrors share one label")
    config = build({**raw, "mirrors": []}, FleetConfig, where)
    if not config.public_keys:
        raise UserError(f"{where}: public_keys must name at least one key")
    config.keys  # noqa: B018 - a bad key fails here, before any probe
    return replace(config, mirrors=mirrors)


@dataclass(frozen=True)
class Observation:
    """One probe of one mirror. verdict: "ok" (a verified stamp, and the spot checks
    passed), "unreachable" (no answer: says nothing about the tree) or "bad" (it
    answered with a forged stamp or a tree that does not match its manifest)."""

    label: str
    verdict: str
    stamp: Stamp | None
    error: str | None
    at: float  # when the probe started (unix)
    seconds: float
    checked_files: int = 0
    # for a bad verdict: "certificate", "stamp", or SpotCheckFailed.check
    check: str | None = None
    certificate_expires: float | None = None  # https: when its certificate ends (unix)


@dataclass(frozen=True)
class Head:
    """The origin's current stamp, exactly as it serves it, and what to spot-check."""

    stamp: Stamp
    raw: bytes
    pool: tuple[Candidate, ...] = ()

    @property
    def envelope(self) -> dict[str, Any]:
        return json.loads(self.raw)


def fetch_head(
    config: FleetConfig, previous: Head | None = None, spot_checks: int = SPOT_CHECKS
) -> Head:
    """The origin's verified stamp, plus the projects its new records name when the
    serial moved."""
    stamp, raw = fetch_origin_stamp(config)
    keys = config.keys
    problem = stamp.expiry_problem()
    if problem:  # nothing it says can be published as fresh: keep the last head
        raise UserError(f"origin: {problem}; is `mirrorfleet-heartbeat.timer` running?")
    if previous is not None and previous.stamp.serial == stamp.serial:
        return Head(stamp, raw, previous.pool)
    pool: tuple[Candidate, ...] = previous.pool if previous is not None else ()
    since = previous.stamp.serial if previous is not None else 0
    if spot_checks:
        try:
            pool = tuple(
                candidates_from_records(
                    config.origin_url, keys, config.timeout, stamp.serial, since, pool
                )
            )
        except (Unreachable, SpotCheckFailed, BadSignature) as exc:
            # the head still counts; spot checks draw from the last good pool
            log.warning("origin change records: %s", exc)
    return Head(stamp, raw, pool)


def fetch_origin_stamp(config: FleetConfig) -> tuple[Stamp, bytes]:
    """The origin's verified stamp. A signer not trusted yet (a rotation), or a stamp
    naming a newer keys document (a revocation), sends the monitor for the origin's
    keys document first, so a revoked key is refused within one heartbeat."""
    keys = config.keys
    for _attempt in range(2):
        try:
            stamp, raw = fetch_stamp(config.origin_url, keys, config.timeout)
        except StampUnavailable as exc:
            if exc.missing or not exc.rejected or not _refresh(config):
                raise UserError(f"origin: {exc}") from None
            continue
        if stamp.keys <= keys.version:
            break
        try:
            if not _refresh(config):
                break
        except UserError as exc:
            if not keys.signed_by_anchor(raw):
                raise
            log.warning("%s: not needed, the stamp's signer is pinned itself", exc)
            break
    else:
        raise UserError("origin: its keys document changed while it was read; next round")
    if stamp.keys > keys.version and not keys.signed_by_anchor(raw):
        raise UserError(
            f"origin: its stamp names keys document version {stamp.keys}, "
            f"and it serves version {keys.version}"
        )
    return stamp, raw


def _refresh(config: FleetConfig) -> bool:
    try:
        return config.keys.refresh(config.origin_url, config.timeout)
    except (KeysUnavailable, BadSignature) as exc:
        raise UserError(f"origin keys document: {exc}") from None


def observe(
    spec: MirrorSpec,
    head: Head,
    keys: Sequence[Ed25519PublicKey],
    timeout: float,
    spot_checks: int = SPOT_CHECKS,
    max_file: int = MAX_SPOT_FILE,
    rng: random.Random | None = None,
) -> Observation:
    """Look at one mirror as a client would: its signed stamp, then a few of its files."""
    at, started = time.time(), time.monotonic()
    expires: float | None = None  # https: when the certificate ends, read after the stamp

    def seen(
        verdict: str, stamp: Stamp | None, error: str | None, files: int = 0, check: str = ""
    ) -> Observation:
        took = time.monotonic() - started
        return Observation(
            spec.label, verdict, stamp, error, at, took, files, check or None, expires
        )

    try:
        stamp = fetch_stamp(spec.url, keys, timeout)[0]
    except StampUnavailable as exc:
        check = "certificate" if exc.certificate else "stamp"
        return seen("bad" if exc.answered else "unreachable", None, str(exc), check=check)
    try:  # the stamp's read verified it; this reads when it ends
        expires = web.certificate_expiry(spec.url, timeout)
    except OSError as exc:
        log.info("%s: certificate expiry unknown: %s", spec.label, exc)
    stale = stamp.expiry_problem(at)  # still ok as an answer; judged stale (health.py)
    if stamp.serial > head.stamp.serial or not spot_checks:
        return seen("ok", stamp, stale)  # ahead of our head: the head is refreshed next
    try:
        files = spot_check(
            spec.url,
            stamp,
            head.pool,
            keys,
            timeout,
            spot_checks,
            max_file,
            rng or random.Random(),
        )
    except Unreachable as exc:
        return seen("unreachable", stamp, f"spot check: {exc}")
    except SpotCheckFailed as exc:
        try:  # a sync may have swapped the tree between our reads: then look again later
            moved = fetch_stamp(spec.url, keys, timeout)[0].serial != stamp.serial
        except StampUnavailable:
            moved = False
        return seen("unreachable" if moved else "bad", stamp, f"spot check: {exc}", 0, exc.check)
    return seen("ok", stamp, stale, files)


def observe_all(
    specs: Sequence[MirrorSpec],
    head: Head,
    config: FleetConfig,
    spot_checks: int = SPOT_CHECKS,
    max_parallel: int = MAX_PARALLEL,
    max_file: int = MAX_SPOT_FILE,
) -> list[Observation]:
    keys = config.keys
    workers = max(1, min(max_parallel, len(specs)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
        return list(
            pool.map(lambda s: observe(s, head, keys, config.timeout, spot_checks, max_file), specs)
        )


def probe_fleet(config: FleetConfig, now: int | None = None) -> dict[str, Any]:
    """One look at the whole fleet, without history: {"stamp", "mirrors"} for the publisher.

    The monitor daemon adds hysteresis on top; this is what `dns apply --fleet` uses.
    """
    head = fetch_head(config)
    checked = int(time.time()) if now is None else now
    seen = observe_all(config.mirrors, head, config)
    mirrors = [
        record(spec, first_verdict(o, head.stamp.serial), o.stamp, checked)
        for spec, o in zip(config.mirrors, seen, strict=True)
    ]
    return {"stamp": head.envelope, "mirrors": [asdict(m) for m in mirrors]}


def first_verdict(seen: Observation, head_serial: int) -> str:
    """A state from one observation alone."""
    if seen.verdict != "ok" or seen.stamp is None:
        return "down"
    if seen.stamp.expired(seen.at):
        return "lagging"
    return "fresh" if seen.stamp.serial >= head_serial else "lagging"


def record(spec: MirrorSpec, state: str, stamp: Stamp | None, checked: int) -> MirrorRecord:
    """The mirror as the publisher writes it."""
    return MirrorRecord(
        label=spec.label,
        target=spec.target,
        state=state,
        serial=stamp.serial if stamp else 0,
        ts=stamp.ts if stamp else 0,
        chk=checked,
        url=spec.url,
        port=spec.port,
        weight=spec.weight,
        region=spec.region or None,
    )
