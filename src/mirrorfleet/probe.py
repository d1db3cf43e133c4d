"""Look at every mirror the way a client would, and turn that into the fleet state
the publisher writes to DNS.

A probe fetches the origin's stamp and each mirror's stamp over HTTP and verifies
their signatures with the pinned keys. A mirror is fresh at the origin's serial,
lagging behind it, and down when it does not answer or serves a stamp that does
not verify: a mirror's own claim never makes it fresh.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet.config import build
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.keys import parse_public_key
from mirrorfleet.records import MirrorRecord, check_label
from mirrorfleet.stamp import Stamp, StampUnavailable, fetch_stamp

MAX_PARALLEL = 32


@dataclass(frozen=True)
class MirrorSpec:
    """A mirror as the inventory describes it."""

    label: str
    target: str
    url: str
    port: int = 80
    weight: int = 100
    region: str = ""


@dataclass(frozen=True)
class FleetConfig:
    origin_url: str
    public_keys: tuple[str, ...]
    mirrors: tuple[MirrorSpec, ...]
    timeout: int = 5

    @property
    def keys(self) -> list[Ed25519PublicKey]:
        return [parse_public_key(k) for k in self.public_keys]


def load_fleet_config(path: Path) -> FleetConfig:
    where = str(path)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise MirrorfleetError(f"fleet config {path} is unreadable: {exc}") from None
    tables = raw.pop("mirrors", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise MirrorfleetError(f"{where}: mirrors must be an array of tables ([[mirrors]])")
    mirrors = tuple(build(t, MirrorSpec, f"{where}: mirrors[{i}]") for i, t in enumerate(tables))
    for i, mirror in enumerate(mirrors):
        check_label(mirror.label, f"{where}: mirrors[{i}] label")
    config = build({**raw, "mirrors": []}, FleetConfig, where)
    if not config.public_keys:
        raise MirrorfleetError(f"{where}: public_keys must name at least one key")
    config.keys  # noqa: B018 - a bad key fails here, before any probe
    return FleetConfig(config.origin_url, config.public_keys, mirrors, config.timeout)


def probe_fleet(config: FleetConfig, now: int | None = None) -> dict[str, Any]:
    """{"stamp": the origin's signed stamp, "mirrors": [MirrorRecord fields]}."""
    keys = config.keys
    try:
        head, raw = fetch_stamp(config.origin_url, keys, config.timeout)
    except StampUnavailable as exc:
        raise MirrorfleetError(f"origin: {exc}; nothing to publish without its stamp") from None
    checked = int(time.time()) if now is None else now
    workers = max(1, min(MAX_PARALLEL, len(config.mirrors)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        seen = list(pool.map(lambda m: _probe(m, keys, config.timeout), config.mirrors))
    mirrors = [
        _record(spec, head.serial, stamp, checked)
        for spec, stamp in zip(config.mirrors, seen, strict=True)
    ]
    return {"stamp": json.loads(raw), "mirrors": [asdict(m) for m in mirrors]}


def _probe(spec: MirrorSpec, keys: Sequence[Ed25519PublicKey], timeout: float) -> Stamp | None:
    try:
        return fetch_stamp(spec.url, keys, timeout)[0]
    except StampUnavailable:
        return None


def _record(spec: MirrorSpec, head_serial: int, stamp: Stamp | None, checked: int) -> MirrorRecord:
    if stamp is None:
        state, serial, ts = "down", 0, 0
    else:
        state = "fresh" if stamp.serial >= head_serial else "lagging"
        serial, ts = stamp.serial, stamp.ts
    return MirrorRecord(
        label=spec.label,
        target=spec.target,
        state=state,
        serial=serial,
        ts=ts,
        chk=checked,
        url=spec.url,
        port=spec.port,
        weight=spec.weight,
        region=spec.region or None,
    )
