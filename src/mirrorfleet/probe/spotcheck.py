"""Spot checks: a stamp says "serial N", these check that the tree behind it is there.

A mirror could serve the right stamp over a broken tree (a failed disk, a half
restore, an operator's rm). So the monitor also fetches a few projects the origin's
change records name: the mirror's own signed manifest shard must be the one its
stamp's snapshot names (no shard from another serial) and list the project, the
project's index page must hash to the manifest's value, pip and uv must get that
page's files from the project's folder (clients.py), and one file the page links
must hash to the page's `#sha256=` fragment. All reads are bounded.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urldefrag, urljoin

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet import web
from mirrorfleet.content.pages import PageError, parse_html
from mirrorfleet.probe.clients import check_as_clients
from mirrorfleet.probe.fetch import MAX_PAGE, SpotCheckFailed, Unreachable, fetch, within
from mirrorfleet.tree.changes import MAX_RECORD, changes_path, parse_record
from mirrorfleet.tree.manifest import MAX_SHARD, parse_shard, shard_of, shard_path
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.snapshot import (
    MAX_SNAPSHOT,
    SNAPSHOT_PATH,
    MixedSnapshot,
    Snapshot,
    parse_snapshot,
)
from mirrorfleet.tree.stamp import Stamp

log = logging.getLogger("mirrorfleet.spotcheck")
POOL_SIZE = 1000  # recently changed projects the monitor samples from
# Records read when the head moves, newest first: one per serial in steady state,
# at most this many after a start or a long gap.
POOL_RECORDS = 64
# A project is one path segment of simple/: no "/", "..", "%" (decoded by servers), "?".
PROJECT_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


@dataclass(frozen=True)
class Candidate:
    project: str
    serial: int  # the serial that last changed it, by the origin's records


def candidates_from_records(
    base_url: str,
    keys: Sequence[Ed25519PublicKey],
    timeout: float,
    head: int,
    since: int = 0,
    pool: Sequence[Candidate] = (),
) -> list[Candidate]:
    """The projects the records after `since` up to `head` name (at most the newest
    POOL_RECORDS), newest first, ahead of the older pool; POOL_SIZE at most.

    A missing record (pruned, or a serial that wrote none) is skipped; one that does
    not verify raises BadSignature: the caller keeps its old pool."""
    fresh: dict[str, int] = {}
    for serial in range(head, max(since, head - POOL_RECORDS, 0), -1):
        raw = fetch(urljoin(base_url, changes_path(serial)), timeout, MAX_RECORD)
        if raw is None:
            continue
        for name in parse_record(raw, keys, serial).changed:
            if not PROJECT_RE.fullmatch(name):  # it would point a check outside the tree
                log.warning("record %s: %r is not a project name; not checked", serial, name)
                continue
            fresh.setdefault(name, serial)
    for candidate in pool:
        fresh.setdefault(candidate.project, candidate.serial)
    return [Candidate(name, serial) for name, serial in list(fresh.items())[:POOL_SIZE]]


class SnapshotCache:
    """Snapshots by the sha256 a stamp names: every mirror at one serial shares one, so
    a probe round fetches each once (thread-safe; the newest few are kept)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._by_digest: OrderedDict[str, Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self, base_url: str, stamp: Stamp, keys: Sequence[Ed25519PublicKey], timeout: float
    ) -> Snapshot:
        """The snapshot `stamp` names, from the cache or from the mirror at base_url;
        SpotCheckFailed when the mirror serves another one (or none)."""
        with self._lock:
            if stamp.snapshot in self._by_digest:
                self._by_digest.move_to_end(stamp.snapshot)
                return self._by_digest[stamp.snapshot]
        url = urljoin(base_url, SNAPSHOT_PATH)
        raw = fetch(url, timeout, MAX_SNAPSHOT)
        if raw is None:
            raise SpotCheckFailed(f"{url} is missing at serial {stamp.serial}")
        try:
            snapshot = parse_snapshot(raw, keys, stamp.snapshot)
        except BadSignature as exc:
            raise SpotCheckFailed(f"{url}: {exc}") from None
        with self._lock:
            self._by_digest[stamp.snapshot] = snapshot
            while len(self._by_digest) > self.size:
                self._by_digest.popitem(last=False)
        return snapshot


SNAPSHOTS = SnapshotCache()


def spot_check(
    base_url: str,
    stamp: Stamp,
    pool: Sequence[Candidate],
    keys: Sequence[Ed25519PublicKey],
    timeout: float,
    count: int,
    max_file: int,
    rng: random.Random,
) -> int:
    """Check `count` projects the mirror must hold at `serial`; return how many were checked.

    Raises SpotCheckFailed when the tree is wrong, Unreachable when it could not tell.
    """
    serial = stamp.serial
    eligible = [c for c in pool if c.serial <= serial and PROJECT_RE.fullmatch(c.project)]
    chosen = rng.sample(eligible, min(count, len(eligible)))
    if chosen:
        snapshot = SNAPSHOTS.get(base_url, stamp, keys, timeout)
    for candidate in chosen:
        _check_project(base_url, snapshot, candidate.project, keys, timeout, max_file, rng)
    return len(chosen)


def _check_project(
    base_url: str,
    snapshot: Snapshot,
    project: str,
    keys: Sequence[Ed25519PublicKey],
    timeout: float,
    max_file: int,
    rng: random.Random,
) -> None:
    serial = snapshot.serial
    shard_url = urljoin(base_url, shard_path(project))
    raw = fetch(shard_url, timeout, MAX_SHARD)
    if raw is None:
        raise SpotCheckFailed(f"{shard_url} is missing at serial {serial}")
    try:
        shard_serial, projects = parse_shard(raw, keys)
    except BadSignature as exc:
        raise SpotCheckFailed(f"{shard_url}: {exc}") from None
    if shard_serial > serial:
        raise Unreachable(f"{shard_url} is newer than the stamp: the mirror is mid-sync")
    try:  # signed, but maybe from another serial: the snapshot says which one is ours
        snapshot.check_shard(shard_of(project), raw)
    except MixedSnapshot as exc:
        raise SpotCheckFailed(f"{shard_url}: {exc}") from None
    if project not in projects:
        return  # removed again since that record; nothing to hold
    page_url = urljoin(base_url, f"simple/{project}/index.html")
    page = fetch(page_url, timeout, MAX_PAGE)
    if page is None:
        raise SpotCheckFailed(f"{page_url} is missing at serial {serial}")
    if hashlib.sha256(page).hexdigest() != projects[project][1]:
        if _newer_shard(shard_url, shard_serial, keys, timeout):
            # the sync's rename pass ran between our two reads: not proof of anything
            raise Unreachable(f"{shard_url} changed while it was read: the mirror is mid-sync")
        raise SpotCheckFailed(f"{page_url} does not match its signed manifest entry")
    try:
        doc = parse_html(page, project, page_url)
    except PageError as exc:
        # signed by the origin as it is: not this mirror's fault, and nothing to follow
        log.warning("%s; its files and its clients' view are not checked", exc)
        return
    check_as_clients(base_url, project, doc, timeout, rng)
    links = [
        (urldefrag(urljoin(page_url, entry["url"])).url, entry["hashes"]["sha256"])
        for entry in doc["files"]
        if entry["hashes"].get("sha256")
    ]
    # a link off the mirror's tree (another host, or ../ above it) is not the mirror's to
    # serve: never fetched
    links = [(url, digest) for url, digest in links if within(base_url, url)]
    if not links:
        return
    file_url, digest = rng.choice(links)
    _check_file(file_url, digest, timeout, max_file)


def _newer_shard(url: str, serial: int, keys: Sequence[Ed25519PublicKey], timeout: float) -> bool:
    """True when the shard at url is now signed at a serial after `serial`."""
    raw = fetch(url, timeout, MAX_SHARD)
    try:
        return raw is not None and parse_shard(raw, keys)[0] > serial
    except BadSignature:
        return False


def _check_file(url: str, digest: str, timeout: float, max_file: int) -> None:
    """Hash a file up to max_file bytes; a larger one only has to exist."""
    request = urllib.request.Request(url)
    try:
        with web.urlopen(request, timeout=timeout) as response:
            size = int(response.headers.get("Content-Length") or -1)
            if size > max_file:
                return
            body = response.read(max_file + 1)
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise SpotCheckFailed(f"{url} is missing") from None
        raise Unreachable(f"{url}: HTTP {exc.code}") from None
    except web.READ_ERRORS as exc:
        raise Unreachable(f"{url}: {exc}") from None
    if len(body) <= max_file and hashlib.sha256(body).hexdigest() != digest:
        raise SpotCheckFailed(f"{url} does not match the sha256 its index page names")
