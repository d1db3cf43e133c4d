"""The monitor's spot check asks as pip and uv ask (probe/clients.py): a mirror whose
signed tree is perfect but whose answers would fail a real client is `bad`.

The healthy mirror and the tree-level faults are the mirrors' real nginx site
(tests/nginxkit.py); the faults of a misconfigured server (a 403 on JSON, a wrong
type) come from a stand-in HTTP server that misbehaves in exactly that way.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import random
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from nginxkit import LoopbackNginx

from mirrorfleet.config import OriginConfig
from mirrorfleet.content import pypi
from mirrorfleet.origin.publish import publish
from mirrorfleet.probe.fetch import SpotCheckFailed
from mirrorfleet.probe.spotcheck import Candidate, spot_check
from mirrorfleet.tree.keys import load_signing_key
from mirrorfleet.tree.manifest import shard_path
from mirrorfleet.tree.seal import seal
from mirrorfleet.tree.signed import sign
from mirrorfleet.tree.stamp import fetch_stamp

PROJECT = "demo-00000"  # the demo's project with an sdist, a yank and .metadata files


@pytest.fixture
def tree(tmp_path: Path, origin_config: OriginConfig) -> Path:
    """A published demo tree: every wheel with its .metadata, advertised on both pages."""
    shutil.rmtree(origin_config.tree)
    pypi.generate(origin_config.tree, 3, versions=2)
    assert publish(origin_config, ping=False).serial == 1
    return origin_config.tree


def check(base: str, origin_config: OriginConfig) -> int:
    keys = [load_signing_key(origin_config.signing_key).public_key()]
    pool = [Candidate(PROJECT, 1)]
    stamp = fetch_stamp(base, keys)[0]
    return spot_check(base, stamp, pool, keys, 5, 1, 1 << 20, random.Random(0))


@pytest.fixture
def nginx(tree: Path, tmp_path: Path) -> Iterator[LoopbackNginx]:
    with LoopbackNginx(tree, tmp_path / "nginx") as server:
        yield server


def test_a_healthy_mirror_passes_as_pip_and_uv(nginx, origin_config: OriginConfig) -> None:
    assert check(f"{nginx.url}/", origin_config) == 1


def test_an_advertised_metadata_file_missing_is_bad(nginx, tree, origin_config) -> None:
    for metadata in (tree / "packages" / PROJECT).glob("*.metadata"):
        metadata.unlink()
    with pytest.raises(
        SpotCheckFailed, match=r"an advertised .*\.metadata answers HTTP 404"
    ) as bad:
        check(f"{nginx.url}/", origin_config)
    assert bad.value.check == "metadata"


def test_a_metadata_file_that_is_not_the_advertised_one_is_bad(nginx, tree, origin_config) -> None:
    for metadata in (tree / "packages" / PROJECT).glob("*.metadata"):
        metadata.write_bytes(metadata.read_bytes() + b"Requires-Dist: evil\n")
    with pytest.raises(SpotCheckFailed, match="does not match the sha256 its page advertises"):
        check(f"{nginx.url}/", origin_config)


def test_a_json_page_that_lists_other_files_is_bad(nginx, tree, origin_config) -> None:
    """The signed manifest covers the HTML page; pip and uv read the JSON one."""
    page = tree / "simple" / PROJECT / "index.v1_json"
    doc = json.loads(page.read_bytes())
    doc["files"] = doc["files"][1:]
    page.write_text(json.dumps(doc))
    with pytest.raises(
        SpotCheckFailed, match=r"pip gets a .*json page .* lists other files"
    ) as bad:
        check(f"{nginx.url}/", origin_config)
    assert bad.value.check == "clients"


def misconfigured(tree: Path, fault: str) -> ThreadingHTTPServer:
    """The tree served by a server that breaks one way, as a bad nginx config would."""

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            folder = self.path.startswith("/simple/") and self.path.endswith("/")
            if folder and fault == "403 on JSON" and "json" in self.headers.get("Accept", ""):
                self.send_error(403)
                return
            super().do_GET()

        def guess_type(self, path: str | Path) -> str:
            if fault == "wrong type" and str(path).endswith("index.html"):
                return "application/octet-stream"
            return super().guess_type(path)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=tree))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("403 on JSON", r"pip gets HTTP 403 for .*/simple/demo-00000/"),
        ("wrong type", r"pip gets application/octet-stream for .*/simple/demo-00000/"),
    ],
)
def test_a_server_that_would_fail_a_client_is_bad(
    tree, origin_config: OriginConfig, fault: str, reason: str
) -> None:
    server = misconfigured(tree, fault)
    try:
        with pytest.raises(SpotCheckFailed, match=reason) as bad:
            check(f"http://127.0.0.1:{server.server_address[1]}/", origin_config)
        assert bad.value.check == "clients"
    finally:
        server.shutdown()
        server.server_close()


def test_the_stand_in_server_serves_a_good_tree_well(tree, origin_config) -> None:
    """The control for the faults above: without a fault, the stand-in passes."""
    server = misconfigured(tree, "none")
    try:
        assert check(f"http://127.0.0.1:{server.server_address[1]}/", origin_config) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_signed_page_no_client_could_read_is_not_the_mirrors_fault(
    nginx, tree, origin_config, caplog
) -> None:
    """The origin signed it as it is: the mirror serves it faithfully, so the probe
    passes with a warning rather than blaming (or crashing on) the mirror."""
    page = b'<a href="../../packages/demo-00000/x.whl">x.whl\n'  # an <a> never closed
    (tree / "simple" / PROJECT / "index.html").write_bytes(page)
    key = load_signing_key(origin_config.signing_key)
    doc = {"v": 1, "serial": 1, "projects": {PROJECT: [1, hashlib.sha256(page).hexdigest()]}}
    (tree / shard_path(PROJECT)).write_bytes(sign(doc, key))
    seal(tree, key, 1, "origin")  # as the origin would: its snapshot names the new shard
    with caplog.at_level(logging.WARNING, logger="mirrorfleet.spotcheck"):
        assert check(f"{nginx.url}/", origin_config) == 1
    assert "is never closed; its files and its clients' view are not checked" in caplog.text
