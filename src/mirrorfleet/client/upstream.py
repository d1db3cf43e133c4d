"""The local proxy's side towards the mirrors: pooled, bounded HTTP reads, and what
one mirror has proven (its stamp, the snapshot it names, the shards and pages that
verify against it).

Every way a mirror can fail a request ends in MirrorFailed with one of a few reasons,
so the proxy can fail over and count why without a label per message. Documents that
are the same bytes on every mirror at a serial (snapshots, shards, pages: all named by
sha256) are cached by that sha256 and shared between mirrors.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Generic, TypeVar
from urllib.parse import urljoin

import urllib3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet import web
from mirrorfleet.client.choose import MaxLag, stamp_problem
from mirrorfleet.client.discovery import Listed
from mirrorfleet.client.verify import Digest, Unverified, VerifiedPage, check_page, page_path
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.probe.fetch import MAX_PAGE
from mirrorfleet.tree.manifest import MAX_SHARD, ProjectState, parse_shard, shard_of, shard_path
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.snapshot import MAX_SNAPSHOT, SNAPSHOT_PATH, Snapshot, parse_snapshot
from mirrorfleet.tree.stamp import MAX_STAMP, STAMP_PATH, Stamp, parse_stamp

# Why a mirror failed a request: the label of mirrorfleet_proxy_failovers_total.
# unreachable: no answer (refused, reset, timeout); server-error: a 5xx or another
# status a mirror never sends for a file it holds; stale: its stamp is expired, behind
# what is allowed, or older than one verified before; unverified: an answer that is
# not what the origin signed; missing: a file its own verified page links is not there;
# syncing: caught between a sync's new shards and its new stamp (set aside briefly, not
# counted as a verification failure).
REASONS = ("unreachable", "server-error", "stale", "unverified", "missing", "syncing")
SPOOL_IN_MEMORY = 8 * 1024 * 1024  # larger files spool to disk while they are hashed
CHUNK = 256 * 1024


class MirrorFailed(MirrorfleetError):
    def __init__(self, message: str, reason: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason


class Pool:
    """HTTP(S) to every mirror over kept-alive connections (urllib3), with the
    process's TLS policy (web.py) and one timeout per socket operation."""

    def __init__(self, timeout: float, per_host: int = 8) -> None:
        self.timeout = timeout
        self.http = urllib3.PoolManager(
            num_pools=64,
            maxsize=per_host,
            retries=False,
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            ssl_context=web.context(),
        )

    def get(self, url: str, limit: int) -> bytes:
        """The body (at most `limit` bytes); NotThere on 404/410, MirrorFailed for
        anything else that is not a whole answer."""
        with self._open(url) as response:
            body = response.read(limit + 1)
            if len(body) > limit:
                raise MirrorFailed(f"{url} is larger than {limit} bytes", "unverified")
            return body

    def get_file(self, url: str, digest: Digest, limit: int) -> IO[bytes]:
        """The file, spooled and hashed, rewound: only bytes that hash as the verified
        page says are ever handed on (a failover is still possible until then)."""
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (handed on open)
        hasher = digest.hasher()
        size = 0
        try:
            with self._open(url) as response:
                for chunk in response.stream(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise MirrorFailed(f"{url} is larger than {limit} bytes", "unverified")
                    hasher.update(chunk)
                    spool.write(chunk)
        except BaseException:
            spool.close()
            raise
        if hasher.hexdigest() != digest.value:
            spool.close()
            raise MirrorFailed(
                f"{url} does not match the {digest.name} its verified page names", "unverified"
            )
        spool.seek(0)
        return spool

    def _open(self, url: str) -> urllib3.BaseHTTPResponse:
        try:
            response = self.http.request(
                "GET", url, preload_content=False, headers={"Cache-Control": "no-cache"}
            )
        except (urllib3.exceptions.HTTPError, *web.READ_ERRORS) as exc:
            raise MirrorFailed(f"{url}: {exc}", "unreachable") from None
        if response.status != 200:
            response.close()  # its body is not read: the connection cannot carry another
        if response.status in (404, 410):
            raise NotThere(url)
        if response.status != 200:
            raise MirrorFailed(f"{url}: HTTP {response.status}", "server-error")
        return _Closing(response, url)

    def close(self) -> None:
        self.http.clear()


class NotThere(MirrorfleetError):
    """A 404: the caller says whether that is the mirror's fault."""


class _Closing:
    """A response as a context manager that returns its connection to the pool only
    when it was read to the end, and turns read errors into MirrorFailed."""

    def __init__(self, response: urllib3.BaseHTTPResponse, url: str) -> None:
        self.response, self.url = response, url

    def read(self, amount: int) -> bytes:
        try:
            return self.response.read(amount)
        except (urllib3.exceptions.HTTPError, *web.READ_ERRORS) as exc:
            raise MirrorFailed(f"{self.url}: {exc}", "unreachable") from None

    def stream(self, amount: int):  # type: ignore[no-untyped-def]
        try:
            yield from self.response.stream(amount)
        except (urllib3.exceptions.HTTPError, *web.READ_ERRORS) as exc:
            raise MirrorFailed(f"{self.url}: {exc}", "unreachable") from None

    def __enter__(self) -> _Closing:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is None:  # read to the end (a body over its limit raised)
            self.response.release_conn()
        else:  # a half-read answer: this connection cannot carry another
            self.response.close()


K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A thread-safe least-recently-used map bounded by a total cost."""

    def __init__(self, budget: int, cost: Callable[[V], int] = lambda _: 1) -> None:
        self.budget, self.cost = budget, cost
        self._items: OrderedDict[K, V] = OrderedDict()
        self._spent = 0
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._items

    def get(self, key: K) -> V | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if key in self._items:
                self._spent -= self.cost(self._items.pop(key))
            self._items[key] = value
            self._spent += self.cost(value)
            while self._spent > self.budget and len(self._items) > 1:
                self._spent -= self.cost(self._items.popitem(last=False)[1])


@dataclass(frozen=True)
class Policy:
    """What a mirror's stamp must satisfy, beyond its signature."""

    stamp_age: float = 2.0  # seconds a verified stamp is used before it is read again
    floor: int = 0  # serials below this were verified before: older is a rollback
    max_lag: MaxLag = field(
        default_factory=MaxLag
    )  # as `pick --max-lag`; the default: DNS's verdict


# what one file's entry of a checked page holds in memory (its path and digest):
# measured at ~370 bytes, next to the page's own bytes
ENTRY_BYTES = 384


def page_cost(page: VerifiedPage) -> int:
    return len(page.body) + ENTRY_BYTES * len(page.files)


class Documents:
    """Snapshots, shards and pages by sha256: the same bytes on every mirror."""

    def __init__(self, page_budget: int = 64 * 1024 * 1024) -> None:
        self.snapshots: Lru[str, Snapshot] = Lru(8)
        self.shards: Lru[str, tuple[int, ProjectState]] = Lru(64)
        self.pages: Lru[str, VerifiedPage] = Lru(page_budget, page_cost)


class Mirror:
    """One listed mirror and what it has proven; the proxy holds one per candidate."""

    def __init__(self, listed: Listed) -> None:
        self.listed = listed
        self.base = str(listed.url)
        self.stamp: Stamp | None = None
        self.read_at = 0.0  # monotonic time of the stamp's last read
        self.down_until = 0.0  # monotonic; set when it fails a request
        self.reason: str | None = None  # the last failure, for /status
        self.failures = 0
        self._lock = threading.Lock()

    @property
    def target(self) -> str:
        return self.listed.target

    def url(self, path: str) -> str:
        return urljoin(self.base, path)

    def current(
        self,
        pool: Pool,
        keys: Sequence[Ed25519PublicKey],
        head: Stamp,
        policy: Policy,
        force: bool = False,
    ) -> Stamp:
        """The mirror's stamp, read again when older than policy.stamp_age (or forced),
        and checked: signature, expiry, rollback, DNS's serial, lag."""
        with self._lock:
            if force or self.stamp is None or time.monotonic() - self.read_at > policy.stamp_age:
                stamp = self._read_stamp(pool, keys)
                if self.stamp is not None and stamp.serial < self.stamp.serial:
                    raise MirrorFailed(
                        f"{self.target}: its stamp went back from serial {self.stamp.serial} "
                        f"to {stamp.serial} (a rollback)",
                        "stale",
                    )
                self.stamp, self.read_at = stamp, time.monotonic()
            stamp = self.stamp
        problem = stamp_problem(stamp, self.listed, head, policy.max_lag, policy.floor)
        if problem:
            raise MirrorFailed(f"{self.target}: {problem}", "stale")
        return stamp

    def _read_stamp(self, pool: Pool, keys: Sequence[Ed25519PublicKey]) -> Stamp:
        url = self.url(STAMP_PATH)
        raw = _present(pool, url, MAX_STAMP, "its stamp")
        try:
            return parse_stamp(raw, keys)
        except BadSignature as first:
            refresh = getattr(keys, "refresh", None)  # a Keyring: maybe a rotation
            if refresh is not None:
                try:
                    if refresh(self.base, pool.timeout):
                        return parse_stamp(raw, keys)
                except MirrorfleetError:
                    pass
            explain = getattr(keys, "explain", None)
            why = explain(first) if explain else str(first)
            raise MirrorFailed(f"{url}: {why}", "unverified") from None

    def snapshot(
        self, pool: Pool, docs: Documents, stamp: Stamp, keys: Sequence[Ed25519PublicKey]
    ) -> Snapshot:
        cached = docs.snapshots.get(stamp.snapshot)
        if cached is not None:
            return cached
        url = self.url(SNAPSHOT_PATH)
        raw = _present(pool, url, MAX_SNAPSHOT, "its snapshot")
        try:
            snapshot = parse_snapshot(raw, keys, stamp.snapshot)
        except BadSignature as exc:
            raise MirrorFailed(f"{url}: {exc}", "unverified") from None
        docs.snapshots.put(stamp.snapshot, snapshot)
        return snapshot

    def projects(
        self,
        pool: Pool,
        docs: Documents,
        snapshot: Snapshot,
        project: str,
        keys: Sequence[Ed25519PublicKey],
    ) -> ProjectState:
        """The verified shard that holds `project`, at the snapshot's serial."""
        shard = shard_of(project)
        entry = snapshot.shards.get(shard)
        if entry is None:
            return {}  # no shard at this serial: no project in it exists
        cached = docs.shards.get(entry.sha256)
        if cached is not None:
            return cached[1]
        url = self.url(shard_path(shard))
        raw = _present(pool, url, MAX_SHARD, "a shard its snapshot names")
        try:
            snapshot.check_shard(shard, raw)
            parsed = parse_shard(raw, keys)
        except BadSignature as exc:
            raise MirrorFailed(f"{url}: {exc}", "unverified") from None
        docs.shards.put(entry.sha256, parsed)
        return parsed[1]

    def syncing_past(
        self, pool: Pool, project: str, stamp: Stamp, keys: Sequence[Ed25519PublicKey]
    ) -> bool:
        """Whether the project's shard on the mirror is signed at a serial after its
        stamp: a sync halfway through, not a forgery (as the monitor tells them apart)."""
        try:
            raw = pool.get(self.url(shard_path(project)), MAX_SHARD)
            return parse_shard(raw, keys)[0] > stamp.serial
        except MirrorfleetError:  # unreadable or unsigned: no sign of a sync
            return False

    def page(
        self, pool: Pool, docs: Documents, project: str, sha256: str
    ) -> tuple[VerifiedPage, bool]:
        """The page the shard names by sha256, and whether it was checked just now: a
        page is checked once per content (a hash and a parse of up to 64 MiB), then
        served from the cache whichever mirror asks."""
        cached = docs.pages.get(sha256)
        if cached is not None:
            return cached, False
        body = _present(pool, self.url(page_path(project)), MAX_PAGE, "a page it lists")
        try:
            page = check_page(project, body, sha256)
        except Unverified as exc:
            raise MirrorFailed(f"{self.target}: {exc}", "unverified") from None
        docs.pages.put(sha256, page)
        return page, True

    def file(self, pool: Pool, path: str, digest: Digest, limit: int) -> IO[bytes]:
        try:
            return pool.get_file(self.url(path), digest, limit)
        except NotThere:
            raise MirrorFailed(
                f"{self.target}: {path} is missing, though a verified page links it", "missing"
            ) from None

    def passthrough(self, pool: Pool, path: str, limit: int) -> bytes | None:
        """An answer nothing signs (simple/'s own index): None on 404."""
        try:
            return pool.get(self.url(path), limit)
        except NotThere:
            return None


def _present(pool: Pool, url: str, limit: int, what: str) -> bytes:
    try:
        return pool.get(url, limit)
    except NotThere:
        raise MirrorFailed(f"{url}: {what} is missing (404)", "missing") from None
