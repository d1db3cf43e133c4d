"""The monitor's status page (roles/monitor/files/status/index.html) in real headless
Chromium: a loopback HTTP server serves a copy of the page with fixture status.json
and history.json, Chromium runs its scripts (`--dump-dom`), and the DOM it ends with
is parsed here with html.parser.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.testing.headless import find_chromium, render_dom

PAGE = Path(__file__).resolve().parents[2] / "roles/monitor/files/status/index.html"
NOW = int(time.time())  # fixtures are recent, so the page does not call them stale
HOSTILE = "<img src=x onerror=alert(1)>"
# Sets a marker if it ever runs, so the test sees script execution, not just markup.
HOSTILE_ERROR = '<img src=x onerror="document.body.dataset.pwned=1">'


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    """Replaces the lab prerequisites of conftest.py: this module needs Chromium only.
    Same rule: missing is a failure under MIRRORFLEET_REQUIRE_LAB, a skip otherwise."""
    if find_chromium() is None:
        if os.environ.get("MIRRORFLEET_REQUIRE_LAB"):
            pytest.fail("status page tests are required here but Chromium is missing")
        pytest.skip("status page tests need Chromium: apt-get install chromium")


def mirror(label: str, state: str, published: str | None = None, **fields) -> dict:
    """One status.json mirror entry, shaped as the monitor daemon writes it."""
    entry = {
        "label": label,
        "target": label,
        "url": f"http://{label}/",
        "region": "",
        "weight": 100,
        "tier": 1,
        "upstream": "origin",
        "state": state,
        "published": published or state,
        "serial": 3,
        "lag_serials": 0,
        "lag_seconds": 0,
        "last_sync": NOW - 5,
        "last_probe": NOW - 12,
        "probe_seconds": 0.012,
        "error": None,
    }
    return {**entry, **fields}


def _fixtures(now: int) -> None:
    """(Re)build the fixtures around `now`: relative times ("12 s ago") and the page's
    staleness check read the real clock, so the fixtures must be fresh when rendered,
    not when pytest imported this module."""
    global NOW, MIRRORS, STATUS, HISTORY
    NOW = now
    MIRRORS = [
        mirror("mirror1", "fresh"),
        mirror("mirror2", "lagging", serial=2, lag_serials=1, lag_seconds=310, tier=2),
        mirror("mirror3", "down", "held", serial=None, lag_serials=None, error="timed out"),
        mirror(
            "mirror4",
            "down",
            serial=None,
            lag_serials=None,
            lag_seconds=None,
            last_sync=None,
            probe_seconds=None,
            error="connection refused",
        ),
        mirror(HOSTILE, "fresh", region=HOSTILE, upstream=HOSTILE, error=HOSTILE_ERROR),
    ]
    STATUS = {
        "generated": NOW,
        "zone": "mirrors.lab.test",
        "interval": 30,
        "head": {"serial": 3, "ts": NOW - 10, "origin": "origin", "checked": NOW, "error": None},
        "dns": {"published": NOW, "result": "1 message", "error": None},
        "mirrors": MIRRORS,
    }
    HISTORY = {
        "step": 300,
        "samples": [
            # mirror4 is absent from the oldest sample, as a newly added mirror would be
            {
                "t": NOW - 600,
                "head": 2,
                "mirrors": {
                    m["label"]: ["fresh", 0, 0] for m in MIRRORS if m["label"] != "mirror4"
                },
            },
            {
                "t": NOW - 300,
                "head": 3,
                "mirrors": {m["label"]: ["lagging", 1, 10] for m in MIRRORS},
            },
            {"t": NOW, "head": 3, "mirrors": {m["label"]: ["fresh", 0, 0] for m in MIRRORS}},
        ],
    }


_fixtures(int(time.time()))


@pytest.fixture(scope="module", autouse=True)
def _fresh_fixtures() -> None:
    _fixtures(int(time.time()))


# --- a minimal DOM from Chromium's serialisation -------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def hidden(self) -> bool:
        return "hidden" in self.attrs

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.iter()

    def find_all(self, tag: str, attrs: dict[str, str | None] | None = None) -> list[Node]:
        """Elements named `tag` with these attributes (value None: present, any value)."""
        return [
            n
            for n in self.iter()
            if n.tag == tag
            and all(
                k in n.attrs and (v is None or n.attrs[k] == v) for k, v in (attrs or {}).items()
            )
        ]

    def one(self, tag: str, attrs: dict[str, str | None] | None = None) -> Node:
        found = self.find_all(tag, attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]

    def by_id(self, ident: str) -> Node:
        return next(n for n in self.iter() if n.attrs.get("id") == ident)


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


@dataclass
class Rendered:
    html: str
    root: Node

    @property
    def body(self) -> Node:
        return self.root.one("body")

    def row(self, label: str) -> Node:
        return self.root.one("tr", {"data-mirror": label})

    def cells(self, label: str) -> list[str]:
        """The row's cells as text: label, state, published, serial, lag, lag time, ..."""
        return [c.text for c in self.row(label).children if isinstance(c, Node)]


def parse(html: str) -> Rendered:
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return Rendered(html, builder.root)


# --- a loopback web server -----------------------------------------------------------


class _Handler(SimpleHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/stall":  # never answers (until teardown): a page that cannot load
            self.server.release.wait(60)
            self.send_error(503)
            return
        bodies = self.server.sequences.get(path)
        if bodies is None:
            super().do_GET()
            return
        body = bodies.pop(0) if len(bodies) > 1 else bodies[0]  # the last one repeats
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sequences: dict[str, list[bytes]]
    release: threading.Event


class Site:
    """Scenario folders, each with a copy of the page, under one loopback server."""

    def __init__(self, root: Path, server: _Server) -> None:
        self.root, self.server = root, server
        self.base = f"http://127.0.0.1:{server.server_address[1]}"

    def page(self, name: str, status: dict | str | None, history: dict | str | None) -> str:
        """URL of the page beside these files: dict as JSON, str as is, None absent."""
        folder = self.root / name
        folder.mkdir()
        shutil.copy(PAGE, folder / "index.html")
        for filename, content in (("status.json", status), ("history.json", history)):
            if content is not None:
                text = content if isinstance(content, str) else json.dumps(content)
                (folder / filename).write_text(text)
        return f"{self.base}/{name}/index.html"

    def render(self, name: str, status, history, **kwargs) -> Rendered:
        return parse(render_dom(self.page(name, status, history), **kwargs))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("status-site")
    server = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    server.sequences, server.release = {}, threading.Event()
    thread = threading.Thread(target=server.serve_forever, name="status-site", daemon=True)
    thread.start()
    try:
        yield Site(root, server)
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def page(site: Site) -> Rendered:
    """The full scenario, rendered once for the tests that only look at it."""
    return site.render("full", STATUS, HISTORY)


# --- the page ------------------------------------------------------------------------


def test_page_is_self_contained_and_small() -> None:
    html = PAGE.read_text()
    assert len(html.encode()) < 12 * 1024
    assert not re.search(r"<link|\bsrc=|@import|url\(", html), "external resource in the page"
    assert not re.search(r"\.(inner|outer)HTML|insertAdjacentHTML|document\.write", html)


def test_loads_and_has_a_row_per_mirror(page: Rendered) -> None:
    assert page.body.attrs.get("data-loaded") == "1"
    assert page.root.by_id("load-error").hidden
    assert page.root.by_id("stale").hidden, page.root.by_id("stale").text
    rows = page.root.find_all("tr", {"data-mirror": None})
    assert [r.attrs["data-mirror"] for r in rows] == [m["label"] for m in MIRRORS]


def test_header(page: Rendered) -> None:
    head_time = datetime.fromtimestamp(NOW - 10, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert page.root.by_id("zone").text == "mirrors.lab.test"
    head = page.root.by_id("head").text
    assert "serial 3" in head and head_time in head and "origin" in head
    assert (
        datetime.fromtimestamp(NOW, UTC).strftime("%H:%M:%S") in page.root.by_id("generated").text
    )
    assert "1 message" in page.root.by_id("dns").text
    caption = page.root.one("caption").text
    assert "2 fresh" in caption and "1 lagging" in caption and "2 down" in caption


@pytest.mark.parametrize(
    ("label", "state", "published"),
    [
        ("mirror1", "fresh", "fresh"),
        ("mirror2", "lagging", "lagging"),
        ("mirror3", "down", "held"),
        ("mirror4", "down", "down"),
    ],
)
def test_row_state(page: Rendered, label: str, state: str, published: str) -> None:
    row = page.row(label)
    assert row.attrs["data-state"] == state
    assert f"state-{state}" in row.classes
    cells = page.cells(label)
    assert cells[:3] == [label, state, published]  # the state word, not colour alone
    published_cell = row.find_all("td")[1]
    assert ("differs" in published_cell.classes) == (published != state)


def test_numbers_and_times_are_human(page: Rendered) -> None:
    fresh, lagging, down = page.cells("mirror1"), page.cells("mirror2"), page.cells("mirror4")
    assert lagging[3:6] == ["2", "1", "5 min"]  # serial, lag serials, 310 s
    assert fresh[5] == "0 s"
    assert fresh[6].endswith(" s ago") and fresh[7].endswith(" s ago")
    assert fresh[8] == "12"  # probe duration in ms
    assert fresh[9:12] == ["1", "origin", "—"]  # tier, upstream, empty region
    assert down[3:9] == ["—", "—", "—", "never", down[7], "—"]
    assert down[7].endswith(" s ago")
    assert down[12] == "connection refused"


def test_hostile_strings_stay_text(page: Rendered) -> None:
    assert page.root.find_all("img") == []
    assert "data-pwned" not in page.body.attrs
    cells = page.cells(HOSTILE)
    assert cells[0] == HOSTILE and cells[10] == HOSTILE and cells[11] == HOSTILE
    assert cells[12] == HOSTILE_ERROR
    # serialised as escaped text, not markup
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.html
    assert HOSTILE_ERROR.replace("<", "&lt;").replace(">", "&gt;") in page.html


def test_history_has_a_polyline_per_mirror(page: Rendered) -> None:
    svg = page.root.one("svg", {"id": "history"})
    lines = svg.find_all("polyline", {"data-mirror": None})
    assert sorted(line.attrs["data-mirror"] for line in lines) == sorted(
        m["label"] for m in MIRRORS
    )
    points = {line.attrs["data-mirror"]: line.attrs["points"].split() for line in lines}
    assert len(points["mirror1"]) == 3 and len(points["mirror4"]) == 2
    # lag 1 in the middle sample sits above lag 0 in the others (SVG y grows down)
    ys = [float(p.split(",")[1]) for p in points["mirror1"]]
    assert ys[1] < ys[0] == ys[2]
    assert not page.root.by_id("chart").hidden
    assert page.root.by_id("history-empty").hidden
    legend = [li.text for li in page.root.by_id("legend").find_all("li")]
    assert legend == [m["label"] for m in MIRRORS]


@pytest.mark.parametrize(
    "history",
    [
        pytest.param({"step": 300, "samples": HISTORY["samples"][-1:]}, id="one-sample"),
        pytest.param({"step": 300, "samples": []}, id="empty"),
        pytest.param(None, id="missing-file"),
    ],
)
def test_no_history_yet(site: Site, request: pytest.FixtureRequest, history) -> None:
    page = site.render(request.node.callspec.id, STATUS, history)
    assert page.body.attrs.get("data-loaded") == "1"
    assert len(page.root.find_all("tr", {"data-mirror": None})) == len(MIRRORS)
    empty = page.root.by_id("history-empty")
    assert not empty.hidden and empty.text == "no history yet"
    assert page.root.by_id("chart").hidden
    assert page.root.find_all("polyline", {"data-mirror": None}) == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        pytest.param('{"generated": 1764250000, "mirrors": [', "not valid JSON", id="truncated"),
        pytest.param(None, "HTTP 404", id="missing"),
        pytest.param({"generated": NOW, "zone": "x"}, "no mirrors list", id="no-mirrors"),
    ],
)
def test_broken_status_shows_load_error(
    site: Site, request: pytest.FixtureRequest, status, reason: str
) -> None:
    page = site.render(f"broken-{request.node.callspec.id}", status, HISTORY)
    error = page.root.by_id("load-error")
    assert not error.hidden
    assert reason in error.text
    assert "data-loaded" not in page.body.attrs
    assert page.root.find_all("tr", {"data-mirror": None}) == []


def test_broken_refresh_keeps_the_last_good_table(site: Site) -> None:
    url = site.page("refresh", None, HISTORY)
    site.server.sequences["/refresh/status.json"] = [json.dumps(STATUS).encode(), b"<html>oops"]
    # 20 s of (virtual) page time: the first load and one refresh 15 s later
    page = parse(render_dom(url, virtual_time_ms=20_000))
    assert site.server.sequences["/refresh/status.json"] == [b"<html>oops"], "no refresh?"
    error = page.root.by_id("load-error")
    assert not error.hidden and "not valid JSON" in error.text
    assert page.body.attrs.get("data-loaded") == "1"
    rows = page.root.find_all("tr", {"data-mirror": None})
    assert [r.attrs["data-mirror"] for r in rows] == [m["label"] for m in MIRRORS]


# --- the helper's failures -----------------------------------------------------------


def test_render_dom_without_chromium(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_chromium() is None
    with pytest.raises(MirrorfleetError, match="no Chromium on PATH"):
        render_dom("http://127.0.0.1:9/")


def test_render_dom_reports_a_failing_browser(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'cannot open display' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    with pytest.raises(MirrorfleetError, match=r"exited 3[\s\S]*cannot open display"):
        render_dom("http://127.0.0.1:9/")


def test_render_dom_times_out(site: Site) -> None:
    start = time.monotonic()
    with pytest.raises(MirrorfleetError, match="did not render"):
        render_dom(f"{site.base}/stall", timeout=3)
    assert time.monotonic() - start < 10
