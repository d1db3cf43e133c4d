"""Tests of the tests: the torn-tree Reader that the fault suite relies on records
every shape a torn mirror can show, over real HTTP, and records nothing on a whole one.

Each case serves a tree on loopback, breaks it the way a bad sync would, and reads it
with the same Reader the lab scenarios use.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from labkit import Reader

from mirrorfleet.testing.loopback import LoopbackUpstream
from mirrorfleet.tree.stamp import Stamp

PROJECTS = ["alpha", "beta"]
KEY = Ed25519PrivateKey.generate()


def release(tree: Path, project: str, version: str) -> str:
    """Add a file and (after it) the page that links it with its hash; its path."""
    body = f"{project} {version}".encode() * 50
    path = f"packages/{project}/{project}-{version}.tar.gz"
    (tree / path).parent.mkdir(parents=True, exist_ok=True)
    (tree / path).write_bytes(body)
    write_page(tree, project)
    return path


def write_page(tree: Path, project: str) -> None:
    files = sorted((tree / "packages" / project).iterdir())
    links = "".join(
        f'<a href="../../packages/{project}/{f.name}#sha256='
        f'{hashlib.sha256(f.read_bytes()).hexdigest()}">{f.name}</a>\n'
        for f in files
    )
    page = tree / "simple" / project / "index.html"
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(f"<!DOCTYPE html><html><body>{links}</body></html>\n")


def stamp(tree: Path, serial: int) -> None:
    (tree / ".mirror").mkdir(exist_ok=True)
    (tree / ".mirror/stamp.json").write_bytes(Stamp.new(serial, "origin").sign(KEY))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    tree = tmp_path / "mirror"
    for project in PROJECTS:
        release(tree, project, "1.0")
    stamp(tree, 1)
    return tree


@pytest.fixture
def read(tmp_path: Path, tree: Path) -> Iterator[Callable[..., Reader]]:
    """Read the served tree for a few rounds; the Reader, stopped."""
    with LoopbackUpstream(tree, tmp_path) as served:

        def run(published: dict[int, list[str]] | None = None, rounds: int = 3) -> Reader:
            reader = Reader(served.http_url.rstrip("/"), KEY.public_key(), PROJECTS)
            reader.published.update(published or {})
            with reader:
                deadline = time.monotonic() + 20
                while reader.rounds < rounds and time.monotonic() < deadline:
                    time.sleep(0.01)
            assert not reader.is_alive(), "the reader did not stop"
            return reader

        yield run


def test_a_whole_tree_reads_clean(read) -> None:
    reader = read()
    assert reader.torn == []
    assert reader.rounds >= 3 and reader.files_checked >= 6
    assert reader.serials_seen == {1}


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda stamp_file: stamp_file.write_bytes(stamp_file.read_bytes()[:40]), "truncated"),
        (lambda stamp_file: stamp_file.unlink(), "missing"),
        (lambda stamp_file: stamp_file.write_bytes(b""), "empty"),
        (
            lambda stamp_file: stamp_file.write_bytes(
                Stamp.new(1, "origin").sign(Ed25519PrivateKey.generate())
            ),
            "signed by another key",
        ),
    ],
    ids=["truncated", "missing", "empty", "wrong-key"],
)
def test_a_bad_stamp_is_torn_and_the_reader_keeps_reading(read, tree: Path, damage, why) -> None:
    damage(tree / ".mirror/stamp.json")
    reader = read()
    assert reader.torn, f"a {why} stamp was not recorded"
    assert all(t.startswith("read failed:") for t in reader.torn), reader.torn
    assert reader.rounds >= 3  # every round recorded it; the thread never died


def test_an_index_renamed_in_before_its_file_is_torn(read, tree: Path) -> None:
    """Half a rename pass: the new page is in place, the file it links is not yet."""
    path = release(tree, "alpha", "2.0")
    (tree / path).unlink()
    reader = read()
    assert any(path in t and "missing" in t for t in reader.torn), reader.torn


def test_a_file_deleted_mid_sync_is_torn(read, tree: Path) -> None:
    (tree / "packages/beta/beta-1.0.tar.gz").unlink()
    reader = read()
    assert any("beta-1.0.tar.gz missing" in t for t in reader.torn), reader.torn


def test_a_file_that_does_not_match_its_hash_is_torn(read, tree: Path) -> None:
    (tree / "packages/beta/beta-1.0.tar.gz").write_bytes(b"not what the page says")
    reader = read()
    assert any("does not match its hash" in t for t in reader.torn), reader.torn


def test_a_project_without_its_index_is_torn(read, tree: Path) -> None:
    (tree / "simple/alpha/index.html").unlink()
    (tree / "simple/alpha").rmdir()
    reader = read()
    assert any("no index for alpha" in t for t in reader.torn), reader.torn


def test_a_stamp_ahead_of_its_content_is_torn(read, tree: Path) -> None:
    """The stamp says serial 2, whose new file is not there: the stamp moved first."""
    stamp(tree, 2)
    reader = read(published={2: ["packages/alpha/alpha-2.0.tar.gz"]})
    assert any(t == "serial 2, missing packages/alpha/alpha-2.0.tar.gz" for t in reader.torn)
