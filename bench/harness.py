"""Pieces the sync benchmarks share: an origin with fresh keys, an agent config for a
loopback upstream, raw rsync, and timing of a command with its peak memory.

Imported by bench/sync_bench.py and bench/scale_bench.py (run as scripts, so bench/
is on sys.path).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirrorfleet.config import AgentConfig, OriginConfig
from mirrorfleet.testing.loopback import LoopbackUpstream
from mirrorfleet.tree.keys import SecretsDir, init_secrets

GNU_TIME = "/usr/bin/time"


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def raw_rsync(url: str, dest: Path) -> None:
    """The baseline: one plain `rsync -a --delete` of the whole tree (no --inplace:
    rsync writes each file under a temporary name and renames it into place)."""
    subprocess.run(["rsync", "-a", "--delete", url, f"{dest}/"], check=True, capture_output=True)


@contextmanager
def work_dir(prefix: str) -> Iterator[Path]:
    """A scratch folder under /var/tmp (disk, not tmpfs), removed at the end."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def new_origin(work: Path, tree: Path, name: str = "origin") -> tuple[OriginConfig, SecretsDir]:
    """An origin config for `tree` with a fresh key pair and ping secret in work/secrets,
    and publish's own state in work/origin-state (not the host's /var/lib)."""
    init_secrets(work / "secrets")
    secrets = SecretsDir(work / "secrets")
    config = OriginConfig(
        name, tree, secrets.signing_key, secrets.ping_secret, state_dir=work / "origin-state"
    )
    return config, secrets


def agent_config(
    name: str, tree: Path, upstream: LoopbackUpstream, secrets: SecretsDir, state_dir: Path
) -> AgentConfig:
    """An agent syncing `tree` from the loopback upstream, trusting the origin's key."""
    return AgentConfig(
        name=name,
        tree=tree,
        upstream_rsync=upstream.rsync_url,
        upstream_http=upstream.http_url,
        public_keys=(secrets.public_key.read_text().strip(),),
        ping_secret=secrets.ping_secret,
        state_dir=state_dir,
    )


def cli() -> list[str]:
    """The `mirrorfleet` command of this interpreter (PYTHONPATH picks the source)."""
    script = Path(sys.executable).with_name("mirrorfleet")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from mirrorfleet.cli import main; sys.exit(main())"]


@dataclass
class Measured:
    wall_s: float
    peak_rss_kib: int | None  # largest single process of the command's tree (wait4)
    stdout: str
    stderr: str


def run_measured(argv: Sequence[str], env: dict[str, str] | None = None) -> Measured:
    """Run a command to completion: wall time, and peak RSS from GNU time's %M.

    The kernel reports the largest resident set of the process and of every
    descendant it waited for (rsync's forked receiver, say), not their sum. Fails
    loudly (CalledProcessError with the command's stderr) on a non-zero exit."""
    has_time = os.access(GNU_TIME, os.X_OK)
    with tempfile.NamedTemporaryFile(prefix="mf-rss-", suffix=".txt") as rss:
        full = [GNU_TIME, "-f", "%M", "-o", rss.name, *argv] if has_time else list(argv)
        started = time.perf_counter()
        proc = subprocess.run(full, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, argv, proc.stdout, proc.stderr)
        peak = None
        if has_time:
            lines = Path(rss.name).read_text().split()
            peak = int(lines[-1]) if lines and lines[-1].isdigit() else None
    return Measured(wall, peak, proc.stdout, proc.stderr)
