"""Sync efficiency: the agent against raw rsync on the same tree, on loopback.

    .venv/bin/python bench/sync_bench.py [--projects 17000] [--runs 5] [--json]

A PyPI-style tree of ~3 files per project (wheel, HTML and JSON page) is served by
a real rsync daemon and an HTTP server on 127.0.0.1. Measured in the same run:
- no-change: `mirrorfleet` agent sync (stamp check only) vs a raw `rsync -a` no-op
  over the whole tree;
- 1 % change (new releases of 1 % of projects, published): the agent's sync (a
  deletion scan, the pages staged, the content walk) vs two raw `rsync -a` passes
  over the same change;
- Debian's ftpsync (package `ftpsync`), configured on the same rsync module, for
  both cases: it has no cheap check, so every run is its full two-stage sync.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import agent_config, new_origin, raw_rsync, timed, work_dir

from mirrorfleet.agent.sync import sync_once
from mirrorfleet.content import pypi
from mirrorfleet.origin.publish import publish
from mirrorfleet.testing.loopback import LoopbackUpstream


def ftpsync_runner(work: Path, url: str):
    """A callable running Debian's ftpsync into its own copy, or None if not installed."""
    if shutil.which("ftpsync") is None:
        return None
    home = work / "ftphome"
    (home / ".config/ftpsync").mkdir(parents=True)
    (home / ".config/ftpsync/ftpsync.conf").write_text(
        f"MIRRORNAME=bench\nTO={work / 'ftpsync'}/\nRSYNC_SOURCE={url}\n"
        f"LOGDIR={work / 'ftplog'}\nLOCKDIR={work / 'ftplock'}\nMAILTO=\n"
    )
    env = {**os.environ, "HOME": str(home), "LOGNAME": "root"}
    return lambda: subprocess.run(["ftpsync"], env=env, check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=17000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with work_dir("mf-syncbench-") as work, LoopbackUpstream(work / "origin", work) as upstream:
        tree = work / "origin"
        tree.mkdir()
        started = time.perf_counter()
        pypi.generate(tree, args.projects)
        origin, secrets = new_origin(work, tree)
        publish(origin, ping=False)
        files = sum(1 for p in tree.rglob("*") if p.is_file())
        gen_seconds = time.perf_counter() - started

        url = upstream.rsync_url
        agent = agent_config("bench", work / "mirror", upstream, secrets, work / "state")
        raw = work / "raw"
        ftpsync = ftpsync_runner(work, url)
        first_agent = timed(lambda: sync_once(agent))
        first_raw = timed(lambda: raw_rsync(url, raw))
        first_ftp = timed(ftpsync) if ftpsync else None

        noop_agent = [timed(lambda: sync_once(agent)) for _ in range(args.runs)]
        noop_raw = [timed(lambda: raw_rsync(url, raw)) for _ in range(args.runs)]
        noop_ftp = [timed(ftpsync) for _ in range(args.runs)] if ftpsync else []

        change_agent, change_raw, change_ftp = [], [], []
        changed = max(1, args.projects // 100)
        for run in range(args.runs):
            for i in range(changed):
                pypi.add_release(tree, f"demo-{i * 97 % args.projects:05d}", f"9.{run}.0")
            publish(origin, ping=False)
            change_agent.append(timed(lambda: sync_once(agent)))
            change_raw.append(timed(lambda: (raw_rsync(url, raw), raw_rsync(url, raw))))
            if ftpsync:
                change_ftp.append(timed(ftpsync))
            assert sync_once(agent).status == "unchanged"

        med = statistics.median
        results = {
            "projects": args.projects,
            "files": files,
            "generate_and_publish_s": round(gen_seconds, 1),
            "first_sync_agent_s": round(first_agent, 2),
            "first_sync_raw_rsync_s": round(first_raw, 2),
            "noop_agent_s": round(med(noop_agent), 4),
            "noop_raw_rsync_s": round(med(noop_raw), 4),
            "noop_ratio_raw_over_agent": round(med(noop_raw) / med(noop_agent), 1),
            "change_projects": changed,
            "change_agent_s": round(med(change_agent), 3),
            "change_two_raw_passes_s": round(med(change_raw), 3),
            "change_ratio_agent_over_two_raw": round(med(change_agent) / med(change_raw), 2),
        }
        if ftpsync:
            results.update(
                first_sync_ftpsync_s=round(first_ftp, 2),
                noop_ftpsync_s=round(med(noop_ftp), 3),
                noop_ratio_ftpsync_over_agent=round(med(noop_ftp) / med(noop_agent), 1),
                change_ftpsync_s=round(med(change_ftp), 3),
                change_ratio_agent_over_ftpsync=round(med(change_agent) / med(change_ftp), 2),
            )
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            for key, value in results.items():
                print(f"{key:34} {value}")
    sys.exit(0)


if __name__ == "__main__":
    main()
