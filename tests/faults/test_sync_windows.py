"""The sync agent SIGKILLed on purpose in each window of a sync, for each preset, on
loopback: a real rsync daemon, the real `mirrorfleet agent sync` in its own process
group, a kill of the whole group.

The windows (agent/sync.py): the deletion scan, the pages staged, the content walk,
and the moves after the last rsync and before the stamp. Every round publishes a new
release and drops an old one, and between the scan and the pages a second writer adds
one more release upstream, unpublished: the race that made the old last pass depend on
rsync's sort order (Debian's `dists` sorts before its `pool`). After each kill the
tree is read as the preset's clients read it, then a sync runs to the end and must
match upstream.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from labkit import BIN, SYNC_WINDOWS, kill_all, kill_sync_in
from trees import SHAPES

from mirrorfleet.agent.rsync import STAGING_DIR
from mirrorfleet.config import OriginConfig
from mirrorfleet.origin.changelist import read_change_list
from mirrorfleet.origin.publish import publish
from mirrorfleet.testing.loopback import LoopbackUpstream
from mirrorfleet.tree.keys import SecretsDir, init_secrets, parse_public_key
from mirrorfleet.tree.stamp import read_local_stamp

ROUNDS = int(os.environ.get("MIRRORFLEET_WINDOW_ROUNDS", "6"))  # kills per window
SEED = int(os.environ.get("MIRRORFLEET_FAULT_SEED", "20261127"))
PROJECTS = [f"pkg{i}" for i in range(6)]


def group(pgid: int) -> list[int]:
    """The live processes of a process group (the sync and its rsync)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


class Fleet:
    """One origin tree served on loopback and one mirror tree synced by the CLI."""

    def __init__(
        self, tmp: Path, preset: str, upstream: LoopbackUpstream, secrets: SecretsDir
    ) -> None:
        self.shape = SHAPES[preset](tmp / "origin")
        self.mirror = tmp / "mirror"
        self.origin = OriginConfig(
            name="origin",
            tree=self.shape.root,
            signing_key=secrets.signing_key,
            ping_secret=secrets.ping_secret,
            preset=preset,
            state_dir=tmp / "origin-state",
        )
        self.keys = [parse_public_key(secrets.public_key.read_text())]
        self.config = tmp / "agent.toml"
        self.config.write_text(
            f'name = "mirror1"\ntree = "{self.mirror}"\npreset = "{preset}"\n'
            f'upstream_rsync = "{upstream.rsync_url}"\nupstream_http = "{upstream.http_url}"\n'
            f'public_keys = ["{secrets.public_key.read_text().strip()}"]\n'
            f'ping_secret = "{secrets.ping_secret}"\nstate_dir = "{tmp / "state"}"\n'
            "retries = 0\nrsync_timeout = 30\n"
        )

    def argv(self, mode: str = "delta") -> list[str]:
        full = ["--full"] if mode == "full" else []
        return [str(BIN / "mirrorfleet"), "agent", "sync", *full, "--config", str(self.config)]

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """path -> (size, mtime_ns) of every file but .mirror/: what a writer wrote."""
        root = self.shape.root
        return {
            str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")
            if p.is_file() and not str(p.relative_to(root)).startswith(".mirror")
        }

    def publish(self, before: dict[str, tuple[int, int]]) -> int:
        """Publish, saying exactly what was written since `before` (as a writer that
        knows its own writes does), so both presets get records that list paths."""
        after = self.snapshot()
        paths = [p for p in set(before) | set(after) if before.get(p) != after.get(p)]
        listed = read_change_list(sorted(paths), self.shape.root)
        return publish(self.origin, force=True, ping=False, changed=listed).serial

    def sync(self) -> None:
        proc = subprocess.run(self.argv(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def served_serial(self) -> int | None:
        stamp = read_local_stamp(self.mirror, self.keys)
        return stamp.serial if stamp else None

    def listing(self, tree: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(tree)): p.read_bytes()
            for p in tree.rglob("*")
            if p.is_file() and "/trace/" not in str(p) and ".rsync-partial" not in str(p)
        }


@pytest.mark.parametrize("mode", sorted(SYNC_WINDOWS))
@pytest.mark.parametrize("preset", sorted(SHAPES))
def test_a_sync_killed_in_any_window_never_leaves_a_torn_tree(
    tmp_path: Path, preset: str, mode: str, report: dict
) -> None:
    """mode full: `agent sync --full`, the walk; delta: the default, which syncs by
    the records each publish writes."""
    windows = SYNC_WINDOWS[mode]
    init_secrets(tmp_path / "secrets")
    secrets = SecretsDir(tmp_path / "secrets")
    rng = random.Random(SEED)
    (tmp_path / "origin").mkdir()
    with LoopbackUpstream(tmp_path / "origin", tmp_path) as upstream:
        fleet = Fleet(tmp_path, preset, upstream, secrets)
        for project in PROJECTS:
            fleet.shape.add(project, "1.0")
        publish(fleet.origin, force=True, ping=False)
        fleet.sync()
        landed: Counter[str] = Counter()
        torn: list[str] = []
        leftovers = 0
        extra = iter(range(10_000))
        for round_ in range(ROUNDS):
            for window in windows:
                before = fleet.snapshot()
                project = rng.choice(PROJECTS)
                version = f"2.{round_}.{windows.index(window)}"
                added = fleet.shape.add(project, version, size=rng.choice([4096, 300_000]))
                old = sorted((fleet.shape.root).rglob(f"*{rng.choice(PROJECTS)}*1.0*"))
                if old:  # drop a release: its index is rewritten first, then the file goes
                    fleet.shape.drop(*_name_version(old[0], preset))
                serial = fleet.publish(before)
                published = fleet.snapshot()

                def writer(n: int = next(extra)) -> None:
                    fleet.shape.add(rng.choice(PROJECTS), f"9.{n}")

                proc = subprocess.Popen(
                    fleet.argv(mode),
                    start_new_session=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                try:
                    where = kill_sync_in(
                        window,
                        lambda pgid=proc.pid: group(pgid),
                        rng,
                        between=writer,
                        mode=mode,
                    )
                finally:  # the whole group, whatever the kill above reached
                    kill_all(lambda pgid=proc.pid: group(pgid))
                    proc.wait(10)
                if where == "move" and fleet.served_serial() == serial:
                    where = "after the stamp"
                landed[where] += 1
                leftovers += (fleet.mirror / STAGING_DIR).exists()
                torn += [
                    f"{preset}, killed in {where}: {t}" for t in fleet.shape.torn(fleet.mirror)
                ]
                if fleet.served_serial() == serial and not (fleet.mirror / added).exists():
                    torn.append(f"{preset}: stamp {serial} served before {added}")
                fleet.publish(published)  # the second writer's release too
                fleet.sync()  # the next sync finishes the job
                assert fleet.listing(fleet.mirror) == fleet.listing(fleet.shape.root)
                assert not (fleet.mirror / STAGING_DIR).exists()
    report[f"sync windows ({preset}, {mode})"] = {
        "rounds_per_window": ROUNDS,
        "landed": dict(landed),
        "staging_left_by_a_kill": leftovers,
        "torn": torn[:20],
    }
    assert torn == []
    for window in windows:  # each window was hit on purpose, most of the time
        assert landed[window] >= ROUNDS // 2, landed


def _name_version(path: Path, preset: str) -> tuple[str, str]:
    if preset == "debian":
        package, version, _arch = path.stem.split("_")
        return package, version
    project = path.parent.name
    return project, path.name.removeprefix(f"{project}-").removesuffix(".tar.gz")
