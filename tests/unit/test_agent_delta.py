"""The incremental sync against a real rsync daemon and HTTP server on loopback.

The records here are signed by a stand-in publisher (`publish_paths`), so each test
says exactly which paths a serial names; the origin's own publish is tested with
the records it writes in test_origin_publish.py and end to end in the lab.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.agent import delta, sync
from mirrorfleet.config import AgentConfig, OriginConfig
from mirrorfleet.testing.loopback import LoopbackUpstream
from mirrorfleet.tree.changes import ChangeRecord, Written, changes_path, parse_record
from mirrorfleet.tree.files import atomic_write
from mirrorfleet.tree.keys import load_signing_key
from mirrorfleet.tree.seal import seal
from mirrorfleet.tree.stamp import read_local_stamp


def listing(tree: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(tree)): p.read_bytes()
        for p in tree.rglob("*")
        if p.is_file() and ".mirror/trace/" not in str(p)
    }


def folders(tree: Path) -> set[str]:
    return {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_dir()}


def publish_paths(
    config: OriginConfig,
    written: list[str],
    removed: list[str] = (),  # type: ignore[assignment]
    complete: bool = True,
    key: Ed25519PrivateKey | None = None,
    keep: int = 20_000,
) -> int:
    """Sign serial+1 naming exactly these paths, then its stamp (the publisher's order)."""
    tree, own = config.tree, load_signing_key(config.signing_key)
    previous = read_local_stamp(tree, [own.public_key()])
    serial = previous.serial + 1
    items = []
    for rel in written:
        data = (tree / rel).read_bytes()
        digest = "" if rel.startswith("packages/") else hashlib.sha256(data).hexdigest()
        items.append(Written(rel, len(data), digest))
    record = ChangeRecord(serial, ["x"], items, list(removed), complete, keep, previous.record)
    atomic_write(tree / changes_path(serial), record.sign(key or own), tree)
    seal(tree, own, serial, "origin")
    return serial


def release(config: OriginConfig, add_project, name: str, version: str) -> list[str]:
    add_project(config.tree, name, version)
    return [f"packages/{name}/{name}-{version}.tar.gz", f"simple/{name}/index.html"]


def drop_project(config: OriginConfig, name: str) -> list[str]:
    gone = [f"packages/{name}/{p.name}" for p in (config.tree / "packages" / name).iterdir()]
    shutil.rmtree(config.tree / "packages" / name)
    shutil.rmtree(config.tree / "simple" / name)
    return [*gone, f"simple/{name}/index.html"]


@pytest.fixture
def synced(agent_config: AgentConfig) -> AgentConfig:
    first = sync.sync_once(agent_config)
    assert (first.status, first.mode, first.why_full) == ("synced", "full", "no local stamp")
    return agent_config


def test_one_serial_copies_exactly_what_its_record_names(
    synced: AgentConfig, origin_config: OriginConfig, add_project
) -> None:
    paths = release(origin_config, add_project, "proj1", "2.0")
    # a file the record does not name: a walk would copy it, the delta must not
    (origin_config.tree / "packages/proj3/unlisted.tar.gz").write_bytes(b"not in any record")
    serial = publish_paths(origin_config, paths)
    result = sync.sync_once(synced)
    assert (result.status, result.mode, result.serial) == ("synced", "delta", serial)
    for rel in paths:
        assert (synced.tree / rel).read_bytes() == (origin_config.tree / rel).read_bytes()
    assert not (synced.tree / "packages/proj3/unlisted.tar.gz").exists()
    assert (synced.tree / changes_path(serial)).read_bytes() == (
        origin_config.tree / changes_path(serial)
    ).read_bytes()


def test_records_keep_upstreams_mtime_so_the_audit_does_not_copy_them_again(
    synced: AgentConfig, origin_config: OriginConfig, add_project
) -> None:
    """rsync's quick check compares size and whole-second mtime: a record written
    with the agent's own time would be copied again by every walk, all 20,000."""
    rel = changes_path(publish_paths(origin_config, release(origin_config, add_project, "p", "2")))
    upstream = origin_config.tree / rel
    os.utime(upstream, (1_000_000_000, 1_000_000_000))  # far from now: a copy's time differs
    assert sync.sync_once(synced).mode == "delta"
    assert int((synced.tree / rel).stat().st_mtime) == 1_000_000_000


@pytest.mark.parametrize("behind", [1, 2, 5])
def test_several_serials_behind_merge_into_one_delta(
    synced: AgentConfig, origin_config: OriginConfig, add_project, behind: int
) -> None:
    config = replace(synced, max_delta_serials=5)
    for i in range(behind):
        publish_paths(origin_config, release(origin_config, add_project, f"new{i}", "1.0"))
    if behind > 1:  # the same page twice: the newest record's hash must win
        publish_paths(origin_config, release(origin_config, add_project, "new0", "1.1"))
        config = replace(config, max_delta_serials=behind + 1)
    result = sync.sync_once(config)
    assert (result.status, result.mode) == ("synced", "delta"), result.why_full
    assert listing(config.tree) == listing(origin_config.tree)


def test_further_behind_than_allowed_walks_the_tree(
    synced: AgentConfig, origin_config: OriginConfig, add_project
) -> None:
    for i in range(3):
        publish_paths(origin_config, release(origin_config, add_project, f"new{i}", "1.0"))
    result = sync.sync_once(replace(synced, max_delta_serials=2))
    assert (result.status, result.mode) == ("synced", "full")
    assert "3 serials behind, more than max_delta_serials=2" in result.why_full
    assert listing(synced.tree) == listing(origin_config.tree)


def test_a_removed_project_disappears_with_its_folders(
    synced: AgentConfig, origin_config: OriginConfig
) -> None:
    publish_paths(origin_config, [], drop_project(origin_config, "proj2"))
    result = sync.sync_once(synced)
    assert (result.status, result.mode) == ("synced", "delta"), result.why_full
    assert listing(synced.tree) == listing(origin_config.tree)
    assert not (synced.tree / "packages/proj2").exists()
    assert not (synced.tree / "simple/proj2").exists()
    assert (synced.tree / "packages").is_dir()  # a top-level folder stays, even if emptied


def _missing(tree: Path, serial: int) -> None:
    (tree / changes_path(serial)).unlink()


def _forged(tree: Path, serial: int) -> None:
    record = ChangeRecord(serial, [], [], [])
    (tree / changes_path(serial)).write_bytes(record.sign(Ed25519PrivateKey.generate()))


def _other_serial(tree: Path, serial: int) -> None:
    (tree / changes_path(serial)).write_bytes((tree / changes_path(serial + 1)).read_bytes())


def _hostile_path(tree: Path, serial: int, key: Ed25519PrivateKey) -> None:
    record = ChangeRecord(serial, [], [Written("../outside", 1, "")], [])
    (tree / changes_path(serial)).write_bytes(record.sign(key))


def _incomplete(tree: Path, serial: int, key: Ed25519PrivateKey) -> None:
    """As if the origin had published it so: the chain made again up to the stamp."""
    record = ChangeRecord(serial, [], complete=False)
    (tree / changes_path(serial)).write_bytes(record.sign(key))
    later_path = tree / changes_path(serial + 1)
    later = parse_record(later_path.read_bytes(), [key.public_key()], serial + 1)
    later.prev = hashlib.sha256(record.sign(key)).hexdigest()
    later_path.write_bytes(later.sign(key))
    seal(tree, key, serial + 1, "origin")


def _stray(tree: Path, serial: int, key: Ed25519PrivateKey) -> None:
    """Signed by the origin for this very serial, but not the record the stamp's chain
    names (a publish that died before its stamp, then redone): mix-and-match."""
    record = parse_record((tree / changes_path(serial)).read_bytes(), [key.public_key()], serial)
    record.written = record.written[:1]
    (tree / changes_path(serial)).write_bytes(record.sign(key))


@pytest.mark.parametrize(
    ("spoil", "why"),
    [
        (_missing, "is missing upstream"),
        (_forged, "rejected: signed by unknown key"),
        (_other_serial, "rejected: not the change record of serial"),
        (_hostile_path, "rejected: record names a path outside the tree"),
        (_incomplete, "does not list its paths"),
        (_stray, "record 2 is not the one the stamp's chain names"),
    ],
    ids=["missing", "forged", "other-serial", "hostile-path", "incomplete", "stray"],
)
def test_a_record_that_cannot_be_trusted_means_a_full_sync_that_ends_right(
    synced: AgentConfig, origin_config: OriginConfig, add_project, spoil, why: str
) -> None:
    first = publish_paths(origin_config, release(origin_config, add_project, "new0", "1.0"))
    publish_paths(origin_config, release(origin_config, add_project, "new1", "1.0"))
    key = load_signing_key(origin_config.signing_key)
    if spoil in (_hostile_path, _incomplete, _stray):
        spoil(origin_config.tree, first, key)
    else:
        spoil(origin_config.tree, first)
    result = sync.sync_once(synced)
    assert (result.status, result.mode) == ("synced", "full")
    assert why in result.why_full
    expected = listing(origin_config.tree)
    assert listing(synced.tree) == expected
    assert not (synced.tree.parent / "outside").exists()


@pytest.mark.parametrize(
    ("alter", "why"),
    [
        (
            lambda b: b.replace(b"html", b"HTML", 1),
            "serial 2: simple/proj1/index.html does not match the sha256 its record gives",
        ),
        # rsync's --max-size, the largest size the record lists, turns it away
        (
            lambda b: b + b"<!-- more -->",
            "serial 2: upstream does not hold what its records say: rsync stage 6 (changed "
            "pages): 1 file(s) upstream larger than 180 bytes, not copied: simple/proj1/index.html",
        ),
    ],
    ids=["same-size", "longer"],
)
def test_a_page_that_does_not_match_its_record_is_never_served_by_the_delta(
    synced: AgentConfig, origin_config: OriginConfig, add_project, monkeypatch, alter, why: str
) -> None:
    before = listing(synced.tree)
    paths = release(origin_config, add_project, "proj1", "2.0")
    publish_paths(origin_config, paths)
    page = origin_config.tree / "simple/proj1/index.html"
    page.write_bytes(alter(page.read_bytes()))  # after signing, at the same serial
    seen: list[dict[str, bytes]] = []
    full_sync = sync.full_sync

    def full_sync_watched(config: AgentConfig) -> int:
        seen.append(listing(config.tree))  # what was served when the delta gave up
        return full_sync(config)

    monkeypatch.setattr(sync, "full_sync", full_sync_watched)
    result = sync.sync_once(synced)
    assert (result.status, result.mode) == ("synced", "full")
    assert why in result.why_full, result.why_full
    served = {k: v for k, v in seen[0].items() if not k.startswith("packages/")}
    assert served == {k: v for k, v in before.items() if not k.startswith("packages/")}
    assert not (synced.tree / ".mirrorfleet-next").exists()


def test_upstream_moving_on_during_a_delta_retries_from_the_new_stamp(
    synced: AgentConfig, origin_config: OriginConfig, add_project, monkeypatch
) -> None:
    publish_paths(origin_config, release(origin_config, add_project, "new0", "1.0"))
    real = delta.apply_delta
    calls: list[int] = []

    def moved_on(config: AgentConfig, feed) -> int:
        calls.append(feed.delta.until)
        if len(calls) == 1:  # upstream publishes again while this delta runs
            publish_paths(origin_config, release(origin_config, add_project, "new1", "1.0"))
            raise delta.Mismatch("simple/new1/index.html did not arrive")
        return real(config, feed)

    monkeypatch.setattr(sync, "apply_delta", moved_on)
    result = sync.sync_once(synced)
    assert (result.status, result.mode, result.serial) == ("synced", "delta", calls[0] + 1)
    assert calls == [calls[0], calls[0] + 1]
    assert listing(synced.tree) == listing(origin_config.tree)


def test_too_many_paths_walk_the_tree(
    synced: AgentConfig, origin_config: OriginConfig, add_project
) -> None:
    paths = [p for i in range(3) for p in release(origin_config, add_project, f"n{i}", "1")]
    publish_paths(origin_config, paths)
    result = sync.sync_once(replace(synced, max_delta_paths=5))
    assert result.mode == "full" and "6 paths changed, more than max_delta_paths=5" in (
        result.why_full
    )
    assert listing(synced.tree) == listing(origin_config.tree)


def test_full_repairs_a_file_deleted_behind_the_agents_back(
    synced: AgentConfig, origin_config: OriginConfig
) -> None:
    victim = synced.tree / "packages/proj3/proj3-1.0.tar.gz"
    victim.unlink()
    assert sync.sync_once(synced).status == "unchanged"  # the stamp alone cannot see it
    assert not victim.exists()
    result = sync.sync_once(synced, full=True)
    assert (result.status, result.mode, result.why_full) == ("synced", "full", "asked for")
    assert listing(synced.tree) == listing(origin_config.tree)


def test_a_second_tier_mirror_follows_its_mirror_by_the_same_records(
    synced: AgentConfig, origin_config: OriginConfig, add_project, tmp_path: Path
) -> None:
    tier2_dir = tmp_path / "tier2"
    tier2_dir.mkdir()
    with LoopbackUpstream(synced.tree, tier2_dir) as tier1:
        tier2 = replace(
            synced,
            name="mirror2",
            tree=tmp_path / "tier2-tree",
            upstream_rsync=tier1.rsync_url,
            upstream_http=tier1.http_url,
            state_dir=tmp_path / "tier2-state",
        )
        assert sync.sync_once(tier2).mode == "full"
        for i in range(2):
            publish_paths(origin_config, release(origin_config, add_project, f"t{i}", "1.0"))
            assert sync.sync_once(synced).mode == "delta"
        result = sync.sync_once(tier2)
        assert (result.status, result.mode) == ("synced", "delta"), result.why_full
        assert listing(tier2.tree) == listing(origin_config.tree)


def test_records_past_what_upstream_keeps_are_pruned(
    synced: AgentConfig, origin_config: OriginConfig, add_project
) -> None:
    for i in range(4):
        paths = release(origin_config, add_project, f"k{i}", "1.0")
        serial = publish_paths(origin_config, paths, keep=2)
        assert sync.sync_once(synced).mode == "delta"
    kept = sorted(int(p.stem) for p in (synced.tree / changes_path(0)).parent.glob("*.json"))
    assert kept[-2:] == [serial - 1, serial] and serial - 2 not in kept


def test_a_killed_delta_leaves_the_served_pages_alone(
    synced: AgentConfig, origin_config: OriginConfig, add_project, monkeypatch
) -> None:
    """Stopped after the pages were staged, before they moved: the served tree is the
    old one plus unlinked content, and the next sync finishes the job."""
    before = listing(synced.tree)
    publish_paths(origin_config, release(origin_config, add_project, "proj1", "2.0"))

    def killed(_tree: Path) -> int:
        raise KeyboardInterrupt  # stands in for SIGKILL: nothing after this runs

    monkeypatch.setattr(delta, "move_staged", killed)
    with pytest.raises(KeyboardInterrupt):
        sync.sync_once(synced)
    served = {k: v for k, v in listing(synced.tree).items() if not k.startswith(".mirrorfleet")}
    assert {k: v for k, v in served.items() if k in before} == before
    assert set(served) - set(before) == {"packages/proj1/proj1-2.0.tar.gz"}
    monkeypatch.undo()
    assert sync.sync_once(synced).mode == "delta"
    assert listing(synced.tree) == listing(origin_config.tree)
