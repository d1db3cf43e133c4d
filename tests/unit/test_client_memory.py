"""Rollback (issue 19): a client remembers the highest serial it verified per zone and
refuses an older head or mirror, on loopback HTTP with real signed stamps, and
through the `pick` command; `--forget` starts again."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_client_choose import KEY, base, discovery, listed  # noqa: F401 - fixtures

from mirrorfleet.client.choose import RolledBack, choose
from mirrorfleet.client.memory import FILE, STATE_ENV, Memory, state_dir
from mirrorfleet.errors import UserError

ZONE = "mirrors.test."


def test_the_floor_only_rises_and_forget_clears_it(tmp_path: Path) -> None:
    memory = Memory(tmp_path / "state" / FILE)
    assert memory.serial(ZONE) == 0
    memory.remember(ZONE, 900)
    memory.remember("MIRRORS.test", 800)  # the same zone, written another way
    memory.remember("other.test.", 5)
    assert (memory.serial(ZONE), memory.serial("other.test")) == (900, 5)
    memory.forget(ZONE)
    assert (memory.serial(ZONE), memory.serial("other.test.")) == (0, 5)


def test_a_damaged_memory_is_a_clear_error_and_forget_mends_it(tmp_path: Path) -> None:
    memory = Memory(tmp_path / FILE)
    memory.path.write_text('{"mirrors.test.": "nine hundred"}')
    with pytest.raises(UserError, match="run with --forget"):
        memory.serial(ZONE)
    memory.forget(ZONE)
    memory.remember(ZONE, 7)
    assert json.loads(memory.path.read_text()) == {ZONE: 7}


def test_the_state_directory_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path / "a"))
    assert state_dir() == tmp_path / "a"
    monkeypatch.delenv(STATE_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir() == tmp_path / "xdg" / "mirrorfleet"


def test_a_head_older_than_what_was_verified_is_a_rollback(base: str) -> None:  # noqa: F811
    found = discovery(listed(base, "fast", 100))  # head serial 5
    assert choose(found, [KEY.public_key()], rng=random.Random(0), floor=5).stamp.serial == 5
    with pytest.raises(RolledBack, match="serial 5, older than serial 6 this machine"):
        choose(found, [KEY.public_key()], rng=random.Random(0), floor=6)


def test_a_mirror_older_than_what_was_verified_is_passed_over(base: str) -> None:  # noqa: F811
    """A client that saw serial 5 refuses 4 from another mirror, even where --max-lag
    would allow it, and takes one at 5."""
    from mirrorfleet.client.choose import MaxLag, NoFreshMirror

    behind = listed(base, "behind", 1000, state="lagging", serial=4)
    lag = MaxLag(serials=1)
    assert choose(discovery(behind), [KEY.public_key()], lag, random.Random(0)).stamp.serial == 4
    with pytest.raises(NoFreshMirror, match="older than serial 5 verified before"):
        choose(discovery(behind), [KEY.public_key()], lag, random.Random(0), floor=5)
    # listed fresh, at the same priority, and weighted to be tried first
    both = discovery(listed(base, "behind", 1000, serial=4), listed(base, "fast", 1))
    choice = choose(both, [KEY.public_key()], lag, random.Random(0), floor=5)
    assert choice.mirror.target == "fast.example.net"
    assert ("behind.example.net", "its stamp is serial 4, older than serial 5 verified before") in (
        choice.skipped
    )
