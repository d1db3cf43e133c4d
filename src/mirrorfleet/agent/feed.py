"""Reading the upstream's change records: what a mirror k serials behind must copy.

Each record is fetched over HTTP from the same upstream the stamp came from, checked
against its serial's signature and the chain that ends in the stamp's record, and
merged. Any doubt (a record missing, forged,
from another serial, written without its paths, or a delta too big to be worth it)
is a reason, not an error: the caller falls back to the full sync, which needs no
record at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet.config import AgentConfig
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.probe.fetch import Fetched, SpotCheckFailed, Unreachable, fetch_file
from mirrorfleet.tree.changes import (
    MAX_RECORD,
    ChangeRecord,
    Delta,
    changes_path,
    check_chain,
    merge,
    parse_record,
)
from mirrorfleet.tree.manifest import shard_of_path
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.snapshot import MixedSnapshot, Snapshot
from mirrorfleet.tree.stamp import Stamp

log = logging.getLogger("mirrorfleet.agent")
FETCHERS = 8


@dataclass
class Feed:
    """The delta to apply, and each record's bytes (a mirror serves them on, so a
    mirror below it can sync from it the same way)."""

    delta: Delta
    raw: dict[int, Fetched]
    keep: int  # records upstream keeps, by its newest record: ours prune alike


class NoFeed(MirrorfleetError):
    """Why this sync cannot go by the records; the full sync follows."""


def read_feed(
    config: AgentConfig,
    keys: Sequence[Ed25519PublicKey],
    since: int,
    stamp: Stamp,
    snapshot: Snapshot,
) -> Feed:
    """The records after `since` up to the stamp's serial, chained to the stamp's
    record, and naming every shard as the snapshot does."""
    until = stamp.serial
    gap = until - since
    if gap > config.max_delta_serials:
        raise NoFeed(
            f"{gap} serials behind, more than max_delta_serials={config.max_delta_serials}"
        )
    base = config.upstream_http.rstrip("/") + "/"

    def one(serial: int) -> tuple[int, Fetched, ChangeRecord]:
        url = base + changes_path(serial)
        try:
            raw = fetch_file(url, timeout=config.rsync_timeout, limit=MAX_RECORD)
        except (Unreachable, SpotCheckFailed) as exc:
            raise NoFeed(str(exc)) from None
        if raw is None:
            raise NoFeed(f"record {serial} is missing upstream")
        try:
            return serial, raw, parse_record(raw.body, keys, serial)
        except BadSignature as exc:
            raise NoFeed(f"record {serial} rejected: {exc}") from None

    with ThreadPoolExecutor(max_workers=min(FETCHERS, gap)) as pool:
        fetched = list(pool.map(one, range(since + 1, until + 1)))
    records = [record for _serial, _raw, record in fetched]
    try:
        check_chain([(record, raw.body) for _serial, raw, record in fetched], stamp.record)
    except MixedSnapshot as exc:
        raise NoFeed(str(exc)) from None
    delta = merge(since, records)
    if delta is None:
        incomplete = next(r.serial for r in records if not r.complete)
        raise NoFeed(f"record {incomplete} does not list its paths")
    if delta.size > config.max_delta_paths:
        raise NoFeed(
            f"{delta.size} paths changed, more than max_delta_paths={config.max_delta_paths}"
        )
    for path, item in delta.written.items():
        shard = shard_of_path(path)
        entry = snapshot.shards.get(shard) if shard else None
        if shard and (entry is None or (entry.sha256, entry.size) != (item.sha256, item.size)):
            raise NoFeed(f"the records' {path} is not the one serial {until}'s snapshot names")
    raw = {serial: raw for serial, raw, _record in fetched}
    return Feed(delta=delta, raw=raw, keep=records[-1].keep)
