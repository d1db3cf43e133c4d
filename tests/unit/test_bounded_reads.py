"""Every read from the network has a limit from the format, and an answer over it is
cut off and refused (issue 19, "endless data"): one test per limit, at the component
that does the read, against a real HTTP server on 127.0.0.1 and real rsync.

The hostile server answers the paths it is told to in one of these ways, each
carrying the genuine file first (a signed document stays valid when padded with JSON
whitespace, so only the size can refuse it):
- over: one byte over the limit, with an honest Content-Length;
- endless: no Content-Length and a connection that is never closed, as a body that
  never ends looks to the reader; a reader without a limit would wait for the end;
- lying: a Content-Length of an exabyte, the same body, and the connection held open:
  a reader that trusted the header would allocate or wait for it;
- headers: a status line and then header lines without end (http.client stops at
  100 headers), which must be a refusal too, never an exception out of the component.
An endless or lying answer must be refused promptly (PROMPT), long before the server
would give up (HOLD) or the reader's own socket timeout fires.
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import random
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import CollectorRegistry, Counter

from mirrorfleet.agent import sync
from mirrorfleet.agent.rsync import STAGING_DIR
from mirrorfleet.cli.monitor import MAX_STATUS, monitor_status
from mirrorfleet.client.choose import choose
from mirrorfleet.client.discovery import Discovery, Listed
from mirrorfleet.client.projects import ChangesUnavailable, fetch_changes
from mirrorfleet.config import AgentConfig, OriginConfig
from mirrorfleet.content import pypi
from mirrorfleet.errors import UserError
from mirrorfleet.notify import service
from mirrorfleet.notify.ping import PingVerifier
from mirrorfleet.origin.publish import publish
from mirrorfleet.probe.clients import MAX_METADATA
from mirrorfleet.probe.fetch import MAX_PAGE
from mirrorfleet.probe.observe import (
    MAX_SPOT_FILE,
    FleetConfig,
    Head,
    MirrorSpec,
    Observation,
    fetch_head,
    observe,
)
from mirrorfleet.probe.spotcheck import Candidate
from mirrorfleet.testing.loopback import ClosedOnExit
from mirrorfleet.tree.changes import MAX_RECORD, changes_path
from mirrorfleet.tree.keys import load_signing_key, public_key_text
from mirrorfleet.tree.manifest import MAX_SHARD, shard_path
from mirrorfleet.tree.stamp import MAX_STAMP, STAMP_PATH, read_local_stamp

HOLD = 20.0  # seconds a hostile server keeps an endless answer's connection open, at most
PROMPT = 4.0  # seconds within which every refusal must come: below every reader's timeout
TIMEOUT = 8  # the socket timeout the tests give the readers that take one
MODES = ("over", "endless", "lying")
CHUNK = 1 << 20


class _Hostile(SimpleHTTPRequestHandler):
    """Serves a folder as a mirror does, except paths matching `answers` (fnmatch
    patterns of the URL path) answer in their mode: (mode, limit). `hits`: the
    paths answered so, as a test's proof that the read it is about happened."""

    answers: dict[str, tuple[str, int]]
    hits: list[str]
    stop: threading.Event
    root: Path
    timeout = HOLD + 5  # the server's own sockets are bounded in time too

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        rule = next(
            (r for pattern, r in self.answers.items() if fnmatch.fnmatch(path, pattern)), None
        )
        if rule is None:
            super().do_GET()
            return
        mode, limit = rule
        self.hits.append(path)
        if mode == "headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(10_000):  # until the reader hangs up; ends in any case
                self.wfile.write(b"X-Endless-%d: %s\r\n" % (i, b"y" * 64))
            return
        genuine = self._genuine(path)
        size = limit + 1
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(path if path[-1:] != "/" else "x.html"))
        if mode == "over":
            self.send_header("Content-Length", str(size))
        elif mode == "lying":
            self.send_header("Content-Length", str(1 << 60))
        self.end_headers()
        self.wfile.write(genuine[:size])
        left = size - min(size, len(genuine))
        while left > 0:
            self.wfile.write(b" " * min(CHUNK, left))
            left -= min(CHUNK, left)
        self.wfile.flush()
        if mode != "over":
            self.stop.wait(HOLD)  # never closed while a reader might wait for the end

    def _genuine(self, path: str) -> bytes:
        """The file the path names in the served folder (a folder's index.html)."""
        local = self.root / path.lstrip("/")
        if local.is_dir():
            local = local / "index.html"
        return local.read_bytes() if local.is_file() else b""


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close joins every request thread: none outlives a test

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a reader hanging up mid-answer is the point


class HostileServer(ClosedOnExit):
    """A hostile HTTP server on 127.0.0.1 over `root`; every thread it starts ends at
    close, held connections included."""

    def __init__(self, root: Path, answers: dict[str, tuple[str, int]]) -> None:
        self.stop = threading.Event()
        self.hits: list[str] = []
        attributes = {"answers": answers, "stop": self.stop, "root": root, "hits": self.hits}
        handler = type("Handler", (_Hostile,), attributes)
        self._httpd = _Server(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()  # joins the request threads, which the stop released
        self._thread.join(timeout=10)


@pytest.fixture
def hostile() -> Iterator[Callable[[Path, dict[str, tuple[str, int]]], HostileServer]]:
    started: list[HostileServer] = []

    def start(root: Path, answers: dict[str, tuple[str, int]]) -> HostileServer:
        server = HostileServer(root, answers).__enter__()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def timed(call: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    return call(), time.monotonic() - started


def tree_listing(tree: Path) -> dict[str, bytes]:
    """Every file a mirror serves (not its staging folder, not its own trace)."""
    return {
        str(p.relative_to(tree)): p.read_bytes()
        for p in sorted(tree.rglob("*"))
        if p.is_file() and STAGING_DIR not in p.parts and ".mirror/trace/" not in str(p)
    }


def keys_of(config: OriginConfig) -> list[Ed25519PublicKey]:
    return [load_signing_key(config.signing_key).public_key()]


def larger_than(limit: int) -> str:
    """How a read refuses: "URL is larger than N bytes" (a parser's own size check, as
    parse_html has, says ": larger than", so a test sees which one refused)."""
    return f"is larger than {limit} bytes"


# --- the agent: the upstream's stamp and change records ----------------------------


@pytest.fixture
def synced_at_2(
    agent_config: AgentConfig, origin_config: OriginConfig, add_project
) -> tuple[AgentConfig, dict[str, bytes]]:
    """A mirror synced at serial 1, and the origin published serial 2 since; the
    mirror's files before it syncs again."""
    assert sync.sync_once(agent_config).serial == 1
    before = tree_listing(agent_config.tree)
    add_project(origin_config.tree, "proj9", "1.0")
    assert publish(origin_config, ping=False).serial == 2
    return replace(agent_config, rsync_timeout=TIMEOUT), before


@pytest.mark.parametrize("mode", [*MODES, "headers"])
def test_the_agent_refuses_an_oversized_upstream_stamp_and_keeps_its_tree(
    synced_at_2, origin_config: OriginConfig, hostile, mode: str
) -> None:
    config, before = synced_at_2
    server = hostile(origin_config.tree, {f"/{STAMP_PATH}": (mode, MAX_STAMP)})
    result, took = timed(lambda: sync.sync_once(replace(config, upstream_http=server.url)))
    assert isinstance(result, sync.SyncResult)
    assert (result.status, result.serial) == ("error", 1)
    want = "got more than 100 headers" if mode == "headers" else larger_than(MAX_STAMP)
    assert want in result.error, result.error
    assert took < PROMPT
    assert tree_listing(config.tree) == before
    assert read_local_stamp(config.tree, keys_of(origin_config)).serial == 1  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["genuine", *MODES, "headers"])
def test_the_agent_refuses_an_oversized_change_record_and_walks_the_tree_instead(
    synced_at_2, origin_config: OriginConfig, hostile, mode: str
) -> None:
    """The record is refused, never applied: the full sync, which needs none, brings
    serial 2, and the record the mirror serves on is upstream's genuine one (by rsync)."""
    config, _before = synced_at_2
    answers = {} if mode == "genuine" else {f"/{changes_path(2)}": (mode, MAX_RECORD)}
    server = hostile(origin_config.tree, answers)
    result, took = timed(lambda: sync.sync_once(replace(config, upstream_http=server.url)))
    assert isinstance(result, sync.SyncResult)
    assert (result.status, result.serial) == ("synced", 2), result.error
    assert took < PROMPT + 5  # the walk's own rsync runs on top
    if mode == "genuine":  # the control: the same record within bounds is used
        assert (result.mode, result.why_full) == ("delta", "")
        return
    want = "got more than 100 headers" if mode == "headers" else larger_than(MAX_RECORD)
    assert result.mode == "full"
    assert want in result.why_full, result.why_full
    served = (config.tree / changes_path(2)).read_bytes()
    assert served == (origin_config.tree / changes_path(2)).read_bytes()


# --- the monitor: stamps, change records, shards, pages, .metadata, files ---------------


@pytest.fixture
def published(origin_config: OriginConfig) -> OriginConfig:
    publish(origin_config, ping=False)
    return origin_config


def head_of(config: OriginConfig, pool: tuple[Candidate, ...] = ()) -> Head:
    tree = config.tree
    stamp = read_local_stamp(tree, keys_of(config))
    assert stamp is not None
    return Head(stamp, (tree / STAMP_PATH).read_bytes(), pool)


def probe(config: OriginConfig, url: str, project: str) -> tuple[Observation, float]:
    head = head_of(config, (Candidate(project, 1),))
    spec = MirrorSpec("m", "m.test", url)
    seen, took = timed(lambda: observe(spec, head, keys_of(config), TIMEOUT, rng=random.Random(0)))
    assert isinstance(seen, Observation)
    return seen, took


# the kind of failure the monitor counts (Observation.check) for each
KINDS = {"stamp": "stamp", "shard": "tree", "page": "tree", "folder": "clients"}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("which", "limit"),
    [("stamp", MAX_STAMP), ("shard", MAX_SHARD), ("page", MAX_PAGE), ("folder", MAX_PAGE)],
)
def test_the_monitor_marks_a_mirror_bad_for_an_oversized_answer(
    published: OriginConfig, hostile, mode: str, which: str, limit: int
) -> None:
    """folder: the project's folder URL as pip and uv ask for it (probe/clients.py)."""
    path = {
        "stamp": f"/{STAMP_PATH}",
        "shard": f"/{shard_path('proj0')}",
        "page": "/simple/proj0/index.html",
        "folder": "/simple/proj0/",
    }[which]
    server = hostile(published.tree, {path: (mode, limit)})
    seen, took = probe(published, server.url, "proj0")
    assert (seen.verdict, seen.check) == ("bad", KINDS[which]), seen
    assert larger_than(limit) in (seen.error or ""), seen.error
    assert took < PROMPT


def test_the_monitor_calls_endless_headers_unreachable_not_a_crash(
    published: OriginConfig, hostile
) -> None:
    server = hostile(published.tree, {f"/{STAMP_PATH}": ("headers", MAX_STAMP)})
    seen, took = probe(published, server.url, "proj0")
    assert seen.verdict == "unreachable" and seen.stamp is None
    assert "got more than 100 headers" in (seen.error or "")
    assert took < PROMPT


@pytest.mark.parametrize("mode", MODES)
def test_the_monitor_refuses_an_oversized_origin_stamp(published: OriginConfig, hostile, mode):
    server = hostile(published.tree, {f"/{STAMP_PATH}": (mode, MAX_STAMP)})
    fleet = FleetConfig(server.url, (public_key_text(keys_of(published)[0]),), (), TIMEOUT)
    started = time.monotonic()
    with pytest.raises(UserError, match=f"origin: stamp .* {larger_than(MAX_STAMP)}"):
        fetch_head(fleet)
    assert time.monotonic() - started < PROMPT


@pytest.mark.parametrize("mode", MODES)
def test_the_monitor_keeps_its_pool_when_an_origin_record_is_oversized(
    published: OriginConfig, hostile, add_project, caplog, mode: str
) -> None:
    previous = head_of(published, (Candidate("proj0", 1),))
    add_project(published.tree, "proj9", "1.0")
    assert publish(published, ping=False).serial == 2
    server = hostile(published.tree, {f"/{changes_path(2)}": (mode, MAX_RECORD)})
    fleet = FleetConfig(server.url, (public_key_text(keys_of(published)[0]),), (), TIMEOUT)
    with caplog.at_level(logging.WARNING, logger="mirrorfleet.probe"):
        head, took = timed(lambda: fetch_head(fleet, previous))
    assert isinstance(head, Head)
    assert head.stamp.serial == 2 and head.pool == previous.pool  # proj9 is not in it
    assert larger_than(MAX_RECORD) in caplog.text
    assert took < PROMPT


@pytest.fixture
def demo(origin_config: OriginConfig) -> OriginConfig:
    """A published demo tree: wheels with .metadata files their pages advertise."""
    shutil.rmtree(origin_config.tree)
    pypi.generate(origin_config.tree, 3, versions=2)
    assert publish(origin_config, ping=False).serial == 1
    return origin_config


@pytest.mark.parametrize("mode", MODES)
def test_the_monitor_marks_a_mirror_bad_for_an_oversized_metadata_file(
    demo: OriginConfig, hostile, mode: str
) -> None:
    server = hostile(demo.tree, {"*.metadata": (mode, MAX_METADATA)})
    seen, took = probe(demo, server.url, "demo-00000")
    assert (seen.verdict, seen.check) == ("bad", "metadata"), seen
    assert larger_than(MAX_METADATA) in (seen.error or ""), seen.error
    assert took < PROMPT


def distributions(limit: int, mode: str) -> dict[str, tuple[str, int]]:
    """Every wheel and sdist answers so (not the .metadata files beside them)."""
    return {"/packages/*.whl": (mode, limit), "/packages/*.tar.gz": (mode, limit)}


@pytest.mark.parametrize("mode", MODES)
def test_the_monitor_reads_a_spot_checked_file_only_up_to_its_limit(
    demo: OriginConfig, hostile, mode: str
) -> None:
    """A file over max_file only has to exist: it is read no further than the limit
    (an endless one included), and its hash is not checked; the padding makes it
    wrong, so a reader that went on and hashed it would call the mirror bad."""
    server = hostile(demo.tree, distributions(MAX_SPOT_FILE, mode))
    seen, took = probe(demo, server.url, "demo-00000")
    assert len(server.hits) == 1  # the one file the check picked
    assert (seen.verdict, seen.checked_files, seen.error) == ("ok", 1, None)
    assert took < PROMPT


def test_a_spot_checked_file_within_the_limit_is_hashed(demo: OriginConfig, hostile) -> None:
    """The control: the same padded file at exactly the limit is read whole and
    hashed, and it does not match."""
    server = hostile(demo.tree, distributions(MAX_SPOT_FILE - 1, "over"))
    seen, _took = probe(demo, server.url, "demo-00000")
    assert len(server.hits) == 1
    assert (seen.verdict, seen.check) == ("bad", "tree")
    assert "does not match the sha256 its index page names" in (seen.error or "")


# --- the client: mirrors' stamps and change records ---------------------------------


@pytest.mark.parametrize("mode", [*MODES, "headers"])
def test_the_client_skips_a_mirror_with_an_oversized_stamp(
    published: OriginConfig, hostile, mode: str
) -> None:
    bad = hostile(published.tree, {f"/{STAMP_PATH}": (mode, MAX_STAMP)})
    good = hostile(published.tree, {})
    head = head_of(published).stamp

    def listed(target: str, url: str, priority: int) -> Listed:
        return Listed(target, 80, priority, 100, "fresh", 1, head.ts, head.ts, url)

    found = Discovery(
        "mirrors.test.", head, (listed("bad.test", bad.url, 10), listed("good.test", good.url, 20))
    )
    choice, took = timed(lambda: choose(found, keys_of(published), timeout=TIMEOUT))
    assert choice.mirror.target == "good.test"  # type: ignore[attr-defined]
    ((target, why),) = choice.skipped  # type: ignore[attr-defined]
    want = "got more than 100 headers" if mode == "headers" else larger_than(MAX_STAMP)
    assert target == "bad.test" and want in why, why
    assert took < PROMPT


@pytest.mark.parametrize("mode", MODES)
def test_the_client_refuses_an_oversized_change_record(
    published: OriginConfig, hostile, mode: str
) -> None:
    server = hostile(published.tree, {f"/{changes_path(1)}": (mode, MAX_RECORD)})
    started = time.monotonic()
    with pytest.raises(ChangesUnavailable, match=larger_than(MAX_RECORD)):
        head = read_local_stamp(published.tree, keys_of(published))
        fetch_changes(server.url, head, 0, keys_of(published), TIMEOUT)
    assert time.monotonic() - started < PROMPT


# --- the command line: the monitor's status ---------------------------------------


@pytest.mark.parametrize("mode", [*MODES, "headers"])
def test_monitor_status_refuses_an_oversized_status(tmp_path: Path, hostile, mode: str) -> None:
    (tmp_path / "status.json").write_bytes(b'{"head": {}, "mirrors": []}')
    server = hostile(tmp_path, {"/status.json": (mode, MAX_STATUS)})
    args = ["--url", f"{server.url}status.json"]
    result, took = timed(lambda: CliRunner().invoke(monitor_status, args))
    exc = result.exception  # type: ignore[attr-defined]
    assert isinstance(exc, UserError), result.output  # type: ignore[attr-defined]
    want = "got more than 100 headers" if mode == "headers" else larger_than(MAX_STATUS)
    assert want in str(exc)
    assert took < PROMPT


# --- the agent's and the monitor's ping listener -------------------------------------


def test_a_ping_that_stops_mid_body_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its Content-Length is within MAX_BODY, but the sender stops: the listener gives
    up after READ_TIMEOUT and closes, instead of holding a thread for ever."""
    monkeypatch.setattr(service, "READ_TIMEOUT", 0.5)
    pings = Counter("pings", "pings", ["verdict"], registry=CollectorRegistry())
    handler = service.make_handler(
        "test", PingVerifier(b"s" * 32), lambda _p: None, pings, {}, logging.getLogger("t")
    )
    httpd = service.serve_http(("127.0.0.1", 0), handler)
    try:
        with socket.create_connection(httpd.server_address[:2], timeout=PROMPT) as conn:
            conn.sendall(b"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
            started = time.monotonic()
            assert conn.recv(1024) == b""  # closed by the listener, no answer
            assert time.monotonic() - started < PROMPT
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- rsync: content files ------------------------------------------------------------


def test_the_delta_takes_no_file_bigger_than_its_record_says(
    synced_at_2, origin_config: OriginConfig
) -> None:
    """Upstream swaps a published file for a bigger one: rsync's --max-size (the
    largest size the record lists) skips it, and the delta refuses before anything
    served changed. The walk that follows has no record to go by: max_file_size
    bounds it, and it copies the file."""
    config, _before = synced_at_2
    path = "packages/proj9/proj9-1.0.tar.gz"
    listed = (origin_config.tree / path).stat().st_size
    with open(origin_config.tree / path, "ab") as out:
        out.write(b"x" * 1000)
    result = sync.sync_once(config)
    assert (result.status, result.serial, result.mode) == ("synced", 2, "full"), result.error
    assert "rsync stage 5 (changed content)" in result.why_full
    assert f"upstream larger than {listed} bytes, not copied: {path}" in result.why_full
    assert (config.tree / path).stat().st_size == listed + 1000


def test_the_full_sync_takes_no_file_over_max_file_size(
    synced_at_2, origin_config: OriginConfig
) -> None:
    """A file over max_file_size is not copied, the sync fails naming it and the
    bound, and the mirror keeps serving serial 1; a file of exactly the bound is
    taken. (The config's smallest max_file_size is 64 MiB; the bound is set small
    here, on the dataclass, to keep the files small.)"""
    config, before = synced_at_2
    bound = 4096
    config = replace(config, max_file_size=bound, retries=0)
    files = origin_config.tree / "packages" / "proj9"
    (files / "exact.tar.gz").write_bytes(b"e" * bound)
    (files / "over.tar.gz").write_bytes(b"o" * (bound + 1))
    result = sync.sync_once(config, full=True)
    assert (result.status, result.serial) == ("error", 1)
    assert "rsync stage 4 (content)" in result.error, result.error
    want = f"larger than max_file_size={bound} bytes, not copied: packages/proj9/over.tar.gz"
    assert want in result.error, result.error
    assert not (config.tree / "packages/proj9/over.tar.gz").exists()
    assert (config.tree / "packages/proj9/exact.tar.gz").stat().st_size == bound
    after = tree_listing(config.tree)
    added = {p for p in after if p.startswith("packages/proj9/")}  # content: adds only
    assert {p: b for p, b in after.items() if p not in added} == before
    assert read_local_stamp(config.tree, keys_of(origin_config)).serial == 1  # type: ignore[union-attr]


def test_the_page_stage_takes_no_page_over_max_file_size(
    synced_at_2, origin_config: OriginConfig
) -> None:
    """Index pages are bounded alike, before any content is read: nothing changes."""
    config, before = synced_at_2
    bound = 4096
    config = replace(config, max_file_size=bound, retries=0)
    page = origin_config.tree / "simple" / "huge" / "index.html"
    page.parent.mkdir()
    page.write_bytes(b"<!DOCTYPE html>" + b" " * bound)
    result = sync.sync_once(config, full=True)
    assert (result.status, result.serial) == ("error", 1)
    want = f"larger than max_file_size={bound} bytes, not copied: simple/huge/index.html"
    assert "rsync stage 3 (pages)" in result.error and want in result.error, result.error
    assert tree_listing(config.tree) == before
