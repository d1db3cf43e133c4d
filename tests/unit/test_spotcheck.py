"""Spot checks tell a broken tree from one caught in its sync's rename pass: both show a
page that does not match the shard read a moment before, but only the sync leaves a
newer shard behind."""

from __future__ import annotations

import functools
import random
import shutil
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mirrorfleet.config import OriginConfig
from mirrorfleet.origin.publish import publish
from mirrorfleet.probe.fetch import SpotCheckFailed, Unreachable
from mirrorfleet.probe.spotcheck import Candidate, spot_check
from mirrorfleet.tree.keys import SecretsDir, parse_public_key
from mirrorfleet.tree.manifest import shard_path
from mirrorfleet.tree.stamp import fetch_stamp

PROJECT = "proj1"
SHARD, PAGE = shard_path(PROJECT), f"simple/{PROJECT}/index.html"


@pytest.fixture
def trees(tmp_path: Path, origin_config: OriginConfig, add_project) -> tuple[Path, Path]:
    """The origin's tree at serial 1, and at serial 2 where PROJECT changed."""
    publish(origin_config, ping=False)
    at_1 = tmp_path / "at-1"
    shutil.copytree(origin_config.tree, at_1)
    add_project(origin_config.tree, PROJECT, "2.0")
    assert publish(origin_config, ping=False).serial == 2
    return at_1, origin_config.tree


@pytest.fixture
def mirror(tmp_path: Path, trees) -> Iterator[tuple[str, Path, list[Callable[[str], None]]]]:
    """A mirror at serial 1 over HTTP; hooks run before each GET, given its path."""
    root = tmp_path / "www"
    shutil.copytree(trees[0], root)
    hooks: list[Callable[[str], None]] = []

    class Handler(SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            for hook in hooks:
                hook(self.path.lstrip("/"))
            super().do_GET()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root, hooks
    finally:
        server.shutdown()
        server.server_close()


def check(base: str, secrets_dir: SecretsDir) -> int:
    keys = [parse_public_key(secrets_dir.public_key.read_text())]
    pool = [Candidate(PROJECT, 1)]
    stamp = fetch_stamp(base, keys)[0]
    return spot_check(base, stamp, pool, keys, 5, 1, 1 << 20, random.Random(0))


def test_a_consistent_tree_passes(mirror, secrets_dir: SecretsDir) -> None:
    base, _, _ = mirror
    assert check(base, secrets_dir) == 1


def test_a_rename_pass_between_two_reads_is_not_called_broken(
    mirror, trees, secrets_dir: SecretsDir
) -> None:
    """The old shard is read, then the sync renames the new shard and page into place
    (in that order, as rsync --delay-updates does), then the page is read."""
    base, root, hooks = mirror
    new = trees[1]

    def rename_pass(path: str) -> None:
        if path == PAGE:
            for moved in (SHARD, PAGE):
                shutil.copyfile(new / moved, root / moved)

    hooks.append(rename_pass)
    with pytest.raises(Unreachable, match="mid-sync"):
        check(base, secrets_dir)


def test_a_wrong_page_without_a_sync_is_proof(mirror, secrets_dir: SecretsDir) -> None:
    base, root, _ = mirror
    (root / PAGE).write_text("<html>not what the manifest says</html>\n")
    with pytest.raises(SpotCheckFailed, match="does not match its signed manifest entry"):
        check(base, secrets_dir)


def test_the_pool_grows_by_the_new_records_only(mirror, secrets_dir: SecretsDir, origin_config):
    """A moved head costs one record per new serial, not a re-read of the history."""
    from mirrorfleet.probe.spotcheck import candidates_from_records
    from mirrorfleet.tree.changes import ChangeRecord, changes_path
    from mirrorfleet.tree.keys import load_signing_key

    base, root, hooks = mirror
    key = load_signing_key(origin_config.signing_key)
    keys = [parse_public_key(secrets_dir.public_key.read_text())]
    for serial, names in [(3, ["a", "b"]), (4, ["c", "a"]), (5, ["d"])]:
        (root / changes_path(serial)).write_bytes(ChangeRecord(serial, names).sign(key))
    read: list[str] = []
    hooks.append(read.append)
    first = candidates_from_records(base, keys, 5, head=4, since=2)
    assert first == [Candidate("c", 4), Candidate("a", 4), Candidate("b", 3)]
    assert read == [changes_path(4), changes_path(3)]
    read.clear()
    moved = candidates_from_records(base, keys, 5, head=5, since=4, pool=first)
    assert [c.project for c in moved] == ["d", "c", "a", "b"]
    assert read == [changes_path(5)]
