"""Change-proportional publish: the record of each serial names exactly the files it
wrote or removed, found from a writer's list or by stat against the publish state,
and a publish reads and rewrites only what its change touches."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mirrorfleet.config import OriginConfig
from mirrorfleet.content import pages, pypi
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.origin import publish as publish_module
from mirrorfleet.origin.changelist import ChangeList, read_change_list
from mirrorfleet.origin.publish import page_links, publish
from mirrorfleet.origin.state import STATE_FILE, PublishState
from mirrorfleet.tree import manifest
from mirrorfleet.tree import seal as seal_module
from mirrorfleet.tree.changes import ChangeRecord, changes_path, parse_record
from mirrorfleet.tree.files import atomic_write
from mirrorfleet.tree.keys import SecretsDir, load_signing_key
from mirrorfleet.tree.stamp import STAMP_PATH, Stamp, read_local_stamp

CLI = str(Path(sys.executable).with_name("mirrorfleet"))
OWN = {".mirror/trace/origin"}  # written by every publish


@pytest.fixture
def config(tmp_path: Path, secrets_dir: SecretsDir) -> OriginConfig:
    """A real demo index (pages link their wheels with #sha256=), published once."""
    tree = tmp_path / "tree"
    pypi.generate(tree, 6, versions=2)
    config = OriginConfig(
        name="origin",
        tree=tree,
        signing_key=secrets_dir.signing_key,
        ping_secret=secrets_dir.ping_secret,
        state_dir=tmp_path / "state",
    )
    publish(config, ping=False)
    return config


def keys(config: OriginConfig) -> list:
    return [load_signing_key(config.signing_key).public_key()]


def record(config: OriginConfig, serial: int) -> ChangeRecord:
    raw = (config.tree / changes_path(serial)).read_bytes()
    return parse_record(raw, keys(config), serial)


def serial_of(config: OriginConfig) -> int:
    stamp = read_local_stamp(config.tree, keys(config))
    assert stamp is not None
    return stamp.serial


def check_against_disk(config: OriginConfig, rec: ChangeRecord) -> None:
    """Every written path is on disk with that size (and sha256, but for content);
    every removed path is gone."""
    for item in rec.written:
        data = (config.tree / item.path).read_bytes()
        assert len(data) == item.size, item.path
        if item.path.startswith("packages/"):
            assert item.sha256 == ""
        else:
            assert item.sha256 == hashlib.sha256(data).hexdigest(), item.path
    for path in rec.removed:
        assert not (config.tree / path).exists(), path


def paths(rec: ChangeRecord) -> set[str]:
    return {w.path for w in rec.written}


def add(config: OriginConfig, project: str, version: str) -> list[str]:
    """A release added the way a writer adds one; the tree-relative paths it wrote."""
    written: list[Path] = []
    pypi.add_release(config.tree, project, version, written=written)
    return [p.relative_to(config.tree).as_posix() for p in written]


def listed(config: OriginConfig, lines: list[str]) -> ChangeList:
    return read_change_list(lines, config.tree)


# -- the record of a listed change ------------------------------------------------------


@pytest.mark.parametrize("say", ["paths", "name"])
def test_a_listed_release_is_recorded_exactly(config: OriginConfig, say: str) -> None:
    wrote = add(config, "demo-00001", "2.0")
    wheel = "packages/demo-00001/demo_00001-2.0-py3-none-any.whl"
    pages = ["simple/demo-00001/index.v1_json", "simple/demo-00001/index.html"]
    assert wrote == [wheel, f"{wheel}.metadata", *pages]
    result = publish(
        config, ping=False, changed=listed(config, wrote if say == "paths" else ["Demo_00001"])
    )
    assert (result.serial, result.mode, result.changed) == (2, "changed-list", ["demo-00001"])
    rec = record(config, 2)
    assert rec.complete and rec.changed == ["demo-00001"] and rec.removed == []
    # the name alone finds the wheel too (the page's new link), and its advertised
    # .metadata, which a client fetches like the wheel
    assert paths(rec) == {*wrote, *OWN, manifest.shard_path("demo-00001")}
    check_against_disk(config, rec)
    assert (result.written, result.removed_paths) == (len(rec.written), 0)
    state = manifest.load_manifest(config.tree, keys(config))
    assert state["demo-00001"][0] == 2 and state["demo-00002"][0] == 1


def test_a_dropped_release_is_recorded_removed(config: OriginConfig) -> None:
    old = config.tree / "packages/demo-00002/demo_00002-1.0.0-py3-none-any.whl"
    old.unlink()
    pages = pypi.write_project_index(config.tree, "demo-00002")
    assert len(pages) == 2
    publish(config, ping=False, changed=listed(config, ["demo-00002"]))
    rec = record(config, 2)
    assert rec.removed == ["packages/demo-00002/demo_00002-1.0.0-py3-none-any.whl"]
    assert paths(rec) == {
        "simple/demo-00002/index.html",
        "simple/demo-00002/index.v1_json",
        *OWN,
        manifest.shard_path("demo-00002"),
    }
    check_against_disk(config, rec)


def test_listed_content_and_other_files_are_taken_as_they_are(config: OriginConfig) -> None:
    (config.tree / "packages/extra").mkdir()
    (config.tree / "packages/extra/data.bin").write_bytes(b"\0" * 1000)
    (config.tree / "web-notes.txt").write_text("hello\n")
    gone = "packages/demo-00003/nothing-here.whl"
    lines = ["packages/extra/data.bin", f"{config.tree}/web-notes.txt", gone]
    result = publish(config, ping=False, changed=listed(config, lines))
    rec = record(config, 2)
    assert rec.changed == [] and result.changed == []
    assert paths(rec) == {"packages/extra/data.bin", "web-notes.txt", *OWN}
    assert rec.removed == [gone]
    check_against_disk(config, rec)


def test_a_listed_project_that_did_not_change_is_not_published(config: OriginConfig) -> None:
    result = publish(config, ping=False, changed=listed(config, ["demo-00004", "demo-00005"]))
    assert not result.published and serial_of(config) == 1


# -- stat mode -----------------------------------------------------------------------------


def test_stat_finds_an_added_release(config: OriginConfig) -> None:
    wrote = add(config, "demo-00003", "3.0")
    result = publish(config, ping=False)
    assert (result.serial, result.mode, result.changed) == (2, "stat", ["demo-00003"])
    rec = record(config, 2)
    assert paths(rec) == {*wrote, *OWN, manifest.shard_path("demo-00003")}
    check_against_disk(config, rec)


def test_stat_finds_a_new_project_and_the_root_pages(config: OriginConfig) -> None:
    wrote = add(config, "brand-new", "1.0")
    assert "simple/index.html" in wrote and "simple/index.v1_json" in wrote
    publish(config, ping=False)
    rec = record(config, 2)
    assert rec.changed == ["brand-new"]
    assert paths(rec) == {*wrote, *OWN, manifest.shard_path("brand-new")}
    check_against_disk(config, rec)


def test_stat_finds_a_removed_project(config: OriginConfig) -> None:
    shutil.rmtree(config.tree / "simple/demo-00002")
    shutil.rmtree(config.tree / "packages/demo-00002")
    root = pypi.write_root_index(config.tree)
    result = publish(config, ping=False)
    assert (result.changed, result.removed) == ([], ["demo-00002"])
    rec = record(config, 2)
    assert rec.changed == ["demo-00002"]
    assert set(rec.removed) == {
        "simple/demo-00002/index.html",
        "simple/demo-00002/index.v1_json",
        "packages/demo-00002/demo_00002-1.0.0-py3-none-any.whl",
        "packages/demo-00002/demo_00002-1.0.1-py3-none-any.whl",
        "packages/demo-00002/demo_00002-1.0.0-py3-none-any.whl.metadata",
        "packages/demo-00002/demo_00002-1.0.1-py3-none-any.whl.metadata",
    }
    assert paths(rec) == {
        *(p.relative_to(config.tree).as_posix() for p in root),
        *OWN,
        manifest.shard_path("demo-00002"),
    }
    check_against_disk(config, rec)
    assert "demo-00002" not in manifest.load_manifest(config.tree, keys(config))


def test_stat_finds_a_changed_root_page_alone(config: OriginConfig) -> None:
    page = config.tree / "simple/index.v1_json"
    page.write_bytes(page.read_bytes().replace(b'"1.1"', b'"1.0"'))
    publish(config, ping=False)
    rec = record(config, 2)
    assert rec.changed == [] and paths(rec) == {"simple/index.v1_json", *OWN}
    check_against_disk(config, rec)


def test_a_touched_page_is_hashed_but_not_published(config: OriginConfig) -> None:
    page = config.tree / "simple/demo-00000/index.html"
    data = page.read_bytes()
    page.unlink()
    page.write_bytes(data)  # same bytes, new inode and mtime
    assert not publish(config, ping=False).published
    state = PublishState.open(config.state_dir)
    try:
        row = state.project("demo-00000")
        assert row is not None and row.stat[2] == page.stat().st_ino  # the new stat is kept
    finally:
        state.close()


# -- full ----------------------------------------------------------------------------------


def test_the_first_publish_and_a_full_one_are_incomplete(config: OriginConfig) -> None:
    first = record(config, 1)
    assert not first.complete and first.written == [] and len(first.changed) == 6
    result = publish(config, ping=False, full=True)  # nothing changed: published anyway
    assert (result.serial, result.mode, result.complete) == (2, "full", False)
    assert not record(config, 2).complete and record(config, 2).changed == []
    add(config, "demo-00001", "2.0")
    assert record(config, publish(config, ping=False).serial).complete  # stat mode again


def test_a_change_too_big_to_list_is_recorded_incomplete(config: OriginConfig, monkeypatch) -> None:
    """An import of a whole tree: the record says "sync everything", not a list no
    agent would copy one by one and no reader would accept."""
    monkeypatch.setattr(publish_module, "MAX_RECORD_PATHS", 4)
    add(config, "demo-00001", "2.0")  # a wheel, its .metadata, two pages: 4, still listed
    assert record(config, publish(config, ping=False).serial).complete
    add(config, "demo-00001", "3.0")
    add(config, "demo-00002", "3.0")
    rec = record(config, publish(config, ping=False).serial)
    assert not rec.complete and rec.written == [] and rec.removed == []
    assert rec.changed == ["demo-00001", "demo-00002"]


def test_a_tree_published_without_state_is_published_in_full(config: OriginConfig) -> None:
    """A tree an older version published (no state): full, against the signed manifest."""
    (config.state_dir / STATE_FILE).unlink()
    add(config, "demo-00004", "2.0")
    result = publish(config, ping=False, changed=listed(config, ["demo-00004"]))
    assert (result.mode, result.changed, result.complete) == ("full", ["demo-00004"], False)
    add(config, "demo-00005", "2.0")
    assert publish(config, ping=False).mode == "stat"


def test_a_state_of_another_tree_is_not_used(config: OriginConfig, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(config.tree, other)
    moved = dataclasses.replace(config, tree=other)
    add(moved, "demo-00001", "2.0")
    assert publish(moved, ping=False).mode == "full"


# -- what a publish reads and rewrites -------------------------------------------------------


def test_a_listed_change_reads_and_rewrites_only_its_shard(
    config: OriginConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    shards = config.tree / manifest.MANIFEST_DIR
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards.iterdir()}
    assert len(before) == 6
    loaded: list[str] = []
    scanned: list[str] = []
    real_load, real_scandir = manifest.load_shard, os.scandir

    def load_shard(tree: Path, shard: str, keys: list) -> object:
        loaded.append(shard)
        return real_load(tree, shard, keys)

    def scandir(path: object = ".") -> object:
        scanned.append(os.fspath(path))
        return real_scandir(path)

    def no_whole_manifest(*_args: object) -> None:
        raise AssertionError("the whole manifest was loaded")

    monkeypatch.setattr(manifest, "load_shard", load_shard)
    monkeypatch.setattr(manifest, "load_manifest", no_whole_manifest)
    monkeypatch.setattr(os, "scandir", scandir)
    wrote = add(config, "demo-00001", "2.0")
    scanned.clear()
    publish(config, ping=False, changed=listed(config, wrote))
    mine = manifest.shard_of("demo-00001")
    assert loaded == [mine]
    assert str(config.tree / "simple") not in scanned  # no walk of simple/
    assert scanned == [str(config.tree / "simple/demo-00001")]
    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in shards.iterdir()}
    assert {name for name in after if after[name] != before[name]} == {f"{mine}.json"}


def test_a_shard_gone_from_the_tree_stops_the_publish(config: OriginConfig) -> None:
    (config.tree / manifest.shard_path("demo-00001")).unlink()
    add(config, "demo-00001", "2.0")
    with pytest.raises(MirrorfleetError, match=r"is missing from the tree.*--full"):
        publish(config, ping=False)
    assert publish(config, ping=False, full=True).serial == 2
    assert "demo-00000" in manifest.load_manifest(config.tree, keys(config))


# -- records kept, crashes, dry runs ---------------------------------------------------------


def test_records_older_than_keep_are_pruned(config: OriginConfig) -> None:
    short = dataclasses.replace(config, keep_records=2)
    for _ in range(4):
        publish(short, ping=False, force=True)
    changes = config.tree / ".mirror/changes"
    assert sorted(p.name for p in changes.iterdir()) == ["4.json", "5.json"]
    assert record(config, 5).keep == 2
    (changes / "1.json").write_bytes((changes / "4.json").read_bytes())  # left by a bigger keep
    publish(short, ping=False, force=True)
    assert (changes / "1.json").exists()  # a publish deletes only the one falling out
    publish(short, ping=False, full=True)
    assert sorted(p.name for p in changes.iterdir()) == ["6.json", "7.json"]


def test_a_crash_before_the_stamp_redoes_the_same_serial(
    config: OriginConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrote = add(config, "demo-00001", "2.0")
    real = publish_module.atomic_write

    def no_stamp(path: Path, *args: object, **kwargs: object) -> bool:
        if path.name == "stamp.json":
            raise OSError("disk on fire")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(publish_module, "atomic_write", no_stamp)
    monkeypatch.setattr(seal_module, "atomic_write", no_stamp)
    with pytest.raises(OSError, match="disk on fire"):
        publish(config, ping=False, changed=listed(config, wrote))
    assert serial_of(config) == 1 and (config.tree / changes_path(2)).exists()
    monkeypatch.setattr(publish_module, "atomic_write", real)
    monkeypatch.setattr(seal_module, "atomic_write", real)
    # told nothing this time: what the dead publish was told is redone all the same
    result = publish(config, ping=False, changed=ChangeList())
    assert result.serial == 2 and serial_of(config) == 2
    rec = record(config, 2)
    assert rec.changed == ["demo-00001"]
    assert paths(rec) == {*wrote, *OWN, manifest.shard_path("demo-00001")}
    check_against_disk(config, rec)
    assert not (config.state_dir / "pending.json").exists()
    assert not publish(config, ping=False).published  # and the state has it now


def test_a_crash_after_the_stamp_publishes_the_change_again(
    config: OriginConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrote = add(config, "demo-00003", "2.0")

    def no_commit(self: PublishState) -> None:
        raise OSError("killed")

    monkeypatch.setattr(PublishState, "commit", no_commit)
    with pytest.raises(OSError, match="killed"):
        publish(config, ping=False)
    monkeypatch.undo()
    assert serial_of(config) == 2
    result = publish(config, ping=False)
    assert (result.serial, result.changed) == (3, ["demo-00003"])
    rec = record(config, 3)
    assert paths(rec) == {*wrote, *OWN, manifest.shard_path("demo-00003")}
    check_against_disk(config, rec)


def test_a_dry_run_writes_nothing(config: OriginConfig) -> None:
    add(config, "demo-00002", "2.0")

    def snapshot() -> dict[str, tuple[int, int]]:
        return {
            str(p): (p.stat().st_mtime_ns, p.stat().st_size)
            for base in (config.tree, config.state_dir)
            for p in base.rglob("*")
            if p.is_file()
        }

    before = snapshot()
    result = publish(config, ping=False, dry_run=True)
    assert (result.serial, result.dry_run, result.published) == (2, True, False)
    # wheel, its .metadata, 2 pages, 2 own
    assert result.changed == ["demo-00002"] and result.written == 6
    assert snapshot() == before
    assert publish(config, ping=False).serial == 2


def test_a_dry_run_without_state_makes_none(config: OriginConfig, tmp_path: Path) -> None:
    fresh = dataclasses.replace(config, state_dir=tmp_path / "nowhere")
    assert publish(fresh, ping=False, dry_run=True).mode == "full"
    assert not fresh.state_dir.exists()


def test_a_broken_state_file_is_one_clear_error(config: OriginConfig) -> None:
    (config.state_dir / STATE_FILE).write_bytes(b"not a database at all" * 100)
    with pytest.raises(MirrorfleetError, match=r"cannot use the publish state .*move it aside"):
        publish(config, ping=False)
    (config.state_dir / STATE_FILE).unlink()
    assert publish(config, ping=False).mode == "full"


def test_a_second_publish_waits_for_the_first(
    config: OriginConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mirrorfleet.origin.state.LOCK_TIMEOUT", 0.1)
    first = PublishState.open(config.state_dir)  # holds the write lock
    try:
        with pytest.raises(MirrorfleetError, match="another publish holds"):
            publish(config, ping=False, force=True)
    finally:
        first.close()
    assert publish(config, ping=False, force=True).serial == 2


def test_a_publish_that_waited_reads_the_stamp_written_meanwhile(config: OriginConfig) -> None:
    """Two publishes never make one serial: the stamp is read under the state's lock."""
    key = load_signing_key(config.signing_key)
    holder = PublishState.open(config.state_dir)  # another publish, mid-way
    results: list[int] = []
    waiting = threading.Thread(
        target=lambda: results.append(publish(config, ping=False, force=True).serial)
    )
    waiting.start()
    time.sleep(0.5)  # it is blocked on the lock by now
    atomic_write(config.tree / STAMP_PATH, Stamp.new(2, "origin").sign(key), config.tree)
    holder.close()  # the other publish is done, at serial 2
    waiting.join(timeout=30)
    assert results == [3] and serial_of(config) == 3


# -- links ---------------------------------------------------------------------------------


def test_page_links() -> None:
    page = (
        b'<a href="../../packages/p/p-1.whl#sha256=ab">p-1</a>'
        b"<a href='../../packages/p/p%2B2.whl'>p+2</a>"
        b'<a HREF="../../packages/p/a&amp;b.whl?x=1">a&b</a>'
        b'<a href="https://files.example/packages/p/far.whl">far</a>'
        b'<a href="/packages/p/rooted.whl">rooted</a>'
        b'<a href="../../../outside/p.whl">out</a>'
        b'<a href="../other/">a folder of simple/</a>'
        b'<a href="../../.mirror/stamp.json">not content</a>'
    )
    assert page_links(page, "p", ("packages",)) == {
        "packages/p/p-1.whl",
        "packages/p/p+2.whl",
        "packages/p/a&b.whl",
    }


def test_page_links_take_advertised_metadata() -> None:
    """PEP 658/714: a client fetches <file>.metadata where an anchor advertises it, so
    the record must carry it like the file (a quoted ">" does not end the tag)."""
    page = (
        b'<a href="../../packages/p/a.whl" data-core-metadata="sha256=ab">a</a>'
        b'<a data-requires-python=">=3" data-dist-info-metadata=true href="../../packages/p/b.whl">'
        b"b</a>"
        b'<a href="../../packages/p/c.whl" data-core-metadata="false">c</a>'
        b'<a href="../../packages/p/d.tar.gz">d</a>'
    )
    assert page_links(page, "p", ("packages",)) == {
        "packages/p/a.whl",
        "packages/p/a.whl.metadata",
        "packages/p/b.whl",
        "packages/p/b.whl.metadata",
        "packages/p/c.whl",
        "packages/p/d.tar.gz",
    }


def test_page_links_read_pages_the_strict_reader_refuses() -> None:
    """Publish follows the links of any page the origin holds: link text that is not
    the file name, an API version no client knows, a <base>."""
    page = (
        b'<meta name="pypi:repository-version" content="9.0"><base href="x">'
        b'<a href="../../packages/p/a.whl">not its name</a>'
    )
    with pytest.raises(pages.PageError):
        pages.parse_html(page, "p")
    assert page_links(page, "p", ("packages",)) == {"packages/p/a.whl"}


def test_a_page_whose_links_cannot_be_read_makes_the_record_say_sync_all(
    config: OriginConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tokenizer giving up (faked: html.parser takes nearly anything) must not
    leave the record silent about the files the page links."""
    pypi.add_release(config.tree, "demo-00002", "9.0.0")

    def unreadable(data: bytes, source: str = "page") -> list:
        raise pages.PageError(f"{source}: not parseable as HTML: faked")

    monkeypatch.setattr(pages, "anchor_hrefs", unreadable)
    result = publish(config, ping=False)
    assert not result.complete and not record(config, result.serial).complete
    assert any("its links are unknown" in w for w in result.warnings), result.warnings


# -- through the command line ------------------------------------------------------------------


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False
    )


def test_demo_content_list_piped_into_publish(config: OriginConfig, tmp_path: Path) -> None:
    toml = tmp_path / "origin.toml"
    toml.write_text(
        f'name = "origin"\ntree = "{config.tree}"\nsigning_key = "{config.signing_key}"\n'
        f'ping_secret = "{config.ping_secret}"\nstate_dir = "{config.state_dir}"\n'
    )
    pipeline = (
        f"{CLI} demo-content {config.tree} --add demo-00004==9.0 --list-changed"
        f" | {CLI} origin publish --config {toml} --changed - --json"
    )
    proc = subprocess.run(
        ["sh", "-c", f"set -e; {pipeline}"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["serial"], out["mode"], out["changed"]) == (2, "changed-list", ["demo-00004"])
    rec = record(config, 2)
    assert out["record"] == {"written": len(rec.written), "removed": 0, "complete": True}
    assert "packages/demo-00004/demo_00004-9.0-py3-none-any.whl" in paths(rec)
    check_against_disk(config, rec)
    # a bad line stops it before anything is written
    bad = _cli("origin", "publish", "--config", str(toml), "--changed", "-", stdin="a\n/etc\n")
    assert bad.returncode == 1 and "<stdin>:2: outside the tree" in bad.stderr
    assert serial_of(config) == 2


def test_origin_import_lists_what_it_wrote(config: OriginConfig, tmp_path: Path) -> None:
    source = tmp_path / "bandersnatch" / "web"
    pypi.add_release(source, "imported", "1.0")
    toml = tmp_path / "origin.toml"
    toml.write_text(
        f'name = "origin"\ntree = "{config.tree}"\nsigning_key = "{config.signing_key}"\n'
        f'ping_secret = "{config.ping_secret}"\nstate_dir = "{config.state_dir}"\n'
    )
    first = _cli("origin", "import", str(source.parent), "--config", str(toml), "--list-changed")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "packages/imported/imported-1.0-py3-none-any.whl",
        "packages/imported/imported-1.0-py3-none-any.whl.metadata",
        "simple/imported/index.v1_json",
        "simple/imported/index.html",
        "simple/index.v1_json",
        "simple/index.html",
    ]
    again = _cli("origin", "import", str(source.parent), "--config", str(toml), "--list-changed")
    assert again.returncode == 0 and again.stdout == ""


def test_the_retired_journal_is_removed_and_recorded_as_removed(config: OriginConfig) -> None:
    """Trees published by older versions carry .mirror/journal.json; the next serial
    deletes it and says so, so every mirror's delta drops it too."""
    journal = config.tree / ".mirror/journal.json"
    atomic_write(journal, b"{}", config.tree)
    wrote = add(config, "demo-00002", "2.0")
    dry = publish(config, ping=False, changed=listed(config, wrote), dry_run=True)
    assert dry.removed_paths == 1 and journal.exists()
    result = publish(config, ping=False, changed=listed(config, wrote))
    assert record(config, result.serial).removed == [".mirror/journal.json"]
    assert not journal.exists()
