"""Scale: what one new release costs to publish and to sync, as the tree grows.

    PYTHONPATH=src .venv/bin/python bench/scale_bench.py \\
        [--sizes 10000,100000,1000000] [--runs 3] [--json] [--keep DIR] [--clean]

Per size (distribution files; ~17 per project, plus two pages per project), an
origin tree in bandersnatch's layout (bench/bandersnatch_tree.py) is served by a real
rsync daemon and an HTTP server on 127.0.0.1 (mirrorfleet.testing.loopback). Then:

1. The origin gets its first publish (full; timed, not a headline number) and the
   mirror becomes an exact copy of it at that serial.
2. Turns: in each, the writer adds one file to one existing project (new folder
   under packages/, both project pages rewritten, the absolute paths written listed
   in a file as bandersnatch's diff-file does), the origin publishes it, and one
   contestant brings the mirror from that serial minus one to that serial:
   - agent: `mirrorfleet agent sync` as it runs by default;
   - agent --full: the full multi-stage sync, when the code has `--full` (else the
     default sync is the full one and this row is the agent row);
   - raw: `rsync -a --delete` of the whole tree, the baseline;
   - limit: `rsync -a --files-from` of exactly the paths that changed (the
     writer's and what publish wrote under .mirror/).
   Every turn measures the publish too: `origin publish --changed LIST` when the
   code has `--changed` (else the plain publish, which hashes every project page).
   Each `--runs` round gives every contestant one turn, in rotated order.
3. A gap: 10 releases published one after another, then one agent sync; the same
   again for the limit (one `--files-from` of the union).

Times are wall times of the command (CLI start-up included) and, for mirrorfleet,
the `seconds` its --json reports (the work in-process, without interpreter start-up
and imports). Peak RSS is GNU time's %M: the largest single process of the command
(rsync's forked receiver included), not a sum. The page cache is warm and never
dropped: the setup has just walked both trees, and a busy mirror's metadata is
hot; the machine is shared, so the load average is recorded.

Why one mirror that the contestants take turns on, rather than a copy each: each
folder of a tree costs ~4.7 KiB of cached directory block plus inode and dentry
(measured at 100k files), and bandersnatch's layout has a folder per file, so at
1M files one tree needs ~6 GiB of cache. Origin plus four copies would not stay
cached in 24 GiB, and the full walks would be measured half cold.

Trees are cached under --keep (default /var/cache/mirrorfleet/bench): the generated
tree (tree/, never written again once its marker is there) and the origin and
mirror working copies (work/), which are reset from it with rsync at the next run
instead of being copied again. --clean removes the working copies at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import bandersnatch_tree as bt
from harness import Measured, agent_config, cli, median, new_origin, run_measured

import mirrorfleet
from mirrorfleet.agent.rsync import STAGES, rsync_argv
from mirrorfleet.config import PRESETS, AgentConfig, dumps
from mirrorfleet.testing.loopback import LoopbackUpstream
from mirrorfleet.tree.files import META_DIR
from mirrorfleet.tree.stamp import STAMP_PATH

DEFAULT_CACHE = Path("/var/cache/mirrorfleet/bench")
CONTENT = PRESETS["pypi"]  # top-level folders whose files are never rewritten
GAP = 10
AGENT = "bench"
TARGETS = {"publish_s_at_1M": 0.2, "agent_over_limit": 2.0, "cost_1M_over_10k": 1.5}


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- what the code can do


@dataclass(frozen=True)
class Code:
    source: str
    commit: str
    publish_changed: bool  # `origin publish --changed FILE`
    agent_full: bool  # `agent sync --full`

    @classmethod
    def detect(cls) -> Code:
        src = Path(mirrorfleet.__file__).resolve().parents[1]
        git = ["git", "-C", str(src)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run([*git, "status", "--porcelain", "--", "."], capture_output=True)
        commit = head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
        pub = subprocess.run(
            [*cli(), "origin", "publish", "--help"], capture_output=True, text=True
        )
        sync = subprocess.run([*cli(), "agent", "sync", "--help"], capture_output=True, text=True)
        return cls(
            str(src), commit or "unknown", "--changed" in pub.stdout, "--full" in sync.stdout
        )


def check_no_inplace() -> None:
    """The mirror shares the origin's content files by hard link (cp -al), which is
    safe only because rsync never writes into an existing file: without --inplace
    (or --append) it writes a temporary file and renames it over the old name, so
    the other tree's link keeps the old bytes. Checked for every agent stage here,
    and the baselines' command lines below never pass either option."""
    config = AgentConfig(
        "probe",
        Path("/nonexistent"),
        "rsync://127.0.0.1/m/",
        "http://127.0.0.1/",
        ("k",),
        Path("/k"),
    )
    for stage in STAGES:
        argv = rsync_argv(config, stage)
        bad = [a for a in argv if a.startswith(("--inplace", "--append"))]
        if bad:
            raise SystemExit(
                f"agent stage {stage} runs rsync with {bad}: hard-link copies are unsafe"
            )


# ---------------------------------------------------------------- trees on disk


def link_copy(src: Path, dst: Path) -> None:
    """dst becomes a copy of src: content folders hard-linked (cp -al: files there are
    never rewritten, a new file gets a new folder), everything else copied (cp -a),
    so no page or .mirror/ file is shared between the two trees."""
    dst.mkdir(parents=True)
    for entry in sorted(src.iterdir()):
        flags = "-al" if entry.name in CONTENT else "-a"
        subprocess.run(["cp", flags, str(entry), str(dst / entry.name)], check=True)


def local_sync(src: Path, dst: Path) -> float:
    """Make dst exactly src (rsync -a --delete, local, no --inplace); seconds."""
    started = time.perf_counter()
    subprocess.run(["rsync", "-a", "--delete", f"{src}/", f"{dst}/"], check=True)
    return time.perf_counter() - started


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Relative path -> (inode, size, mtime_ns) of every file under folder."""
    found = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            st = os.lstat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), folder)] = (
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
            )
    return found


def changed_since(before: dict, after: dict) -> list[str]:
    return sorted(path for path, key in after.items() if before.get(path) != key)


# ---------------------------------------------------------------- one size


@dataclass
class Samples:
    label: str
    wall: list[float] = field(default_factory=list)
    work: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)
    extra: dict[str, object] = field(default_factory=dict)

    def add(self, measured: Measured, work: float | None = None) -> None:
        self.wall.append(measured.wall_s)
        if work is not None:
            self.work.append(work)
        if measured.peak_rss_kib is not None:
            self.rss.append(measured.peak_rss_kib)

    def summary(self) -> dict[str, object]:
        out: dict[str, object] = {"label": self.label, "n": len(self.wall)}
        if self.wall:
            out["wall_s"] = round(median(self.wall), 4)
            out["wall_samples"] = [round(w, 4) for w in self.wall]
        if self.work:
            out["work_s"] = round(median(self.work), 4)
            out["work_samples"] = [round(w, 4) for w in self.work]
        if self.rss:
            out["peak_rss_mib"] = round(max(self.rss) / 1024, 1)
        return {**out, **self.extra}


class SizeBench:
    def __init__(
        self, cache: Path, params: bt.Params, code: Code, args: argparse.Namespace
    ) -> None:
        self.params, self.code, self.args = params, code, args
        self.folder = cache / params.key()
        self.work = self.folder / "work"
        self.origin_tree, self.mirror = self.work / "origin", self.work / "mirror"
        counts = bt.plan(params)
        typical = [i for i, n in enumerate(counts) if abs(n - params.per_project) <= 2] or [0]
        self.candidates = [bt.project_name(i) for i in typical]
        self.releases = 0

    # -- setup

    def prepare(self) -> dict[str, object]:
        info: dict[str, object] = {}
        tree, gen = bt.cached_tree(self.folder.parent, self.params, say)
        info["generated"] = {k: gen[k] for k in ("projects", "pages", "generate_s", "disk_bytes")}
        info["origin_reset_s"] = self._reset(self.origin_tree, tree)
        for scratch in ("state", "secrets", "origin-state"):  # the last run's keys and states
            shutil.rmtree(self.work / scratch, ignore_errors=True)
        (self.work / "state").mkdir()
        self.origin, self.secrets = new_origin(self.work, self.origin_tree)
        self.origin_toml = self.work / "origin.toml"
        self.origin_toml.write_text(dumps(self.origin))
        say(f"first publish of {self.params.files:,} files (full)")
        first = run_measured(
            [*cli(), "origin", "publish", "--config", str(self.origin_toml), "--no-ping", "--json"]
        )
        info["first_publish"] = {
            "wall_s": round(first.wall_s, 2),
            "work_s": json.loads(first.stdout)["seconds"],
        }
        info["mirror_reset_s"] = self._reset(self.mirror, self.origin_tree)
        info["disk_bytes"] = self._disk(tree)
        return info

    def _reset(self, path: Path, source: Path) -> float:
        if path.exists():
            say(f"resetting {path} from {source} (rsync -a --delete)")
            return round(local_sync(source, path), 1)
        say(f"copying {source} to {path} (cp -al content, cp -a the rest)")
        started = time.perf_counter()
        link_copy(source, path)
        return round(time.perf_counter() - started, 1)

    def _disk(self, tree: Path) -> dict[str, int]:
        """du in one go: a hard-linked file counts once, for the first tree naming it."""
        out = subprocess.run(
            ["du", "-sB1", str(tree), str(self.origin_tree), str(self.mirror)],
            capture_output=True,
            text=True,
            check=True,
        )
        sizes = [int(line.split()[0]) for line in out.stdout.splitlines()]
        return dict(
            zip(("generated_tree", "origin_copy_extra", "mirror_copy_extra"), sizes, strict=True)
        )

    # -- the writer and the publisher

    def release(self) -> tuple[Path, list[str]]:
        """One new file for one project; (diff-file, tree-relative paths written).

        It starts on a new second: rsync's quick check compares sizes and whole-second
        mtimes, and the stamp the agent wrote (with its own mtime) in the second the
        next publish rewrites it, at the same size, would look unchanged to the
        contestant after it. Not measured."""
        time.sleep(1.01 - time.time() % 1)
        self.releases += 1
        project = self.candidates[self.releases % len(self.candidates)]
        written = bt.add_release(
            self.origin_tree, project, f"9.{self.releases}.0", root_pages=self.args.root_pages
        )
        listing = self.work / "changed.txt"
        listing.write_text(
            "".join(f"{p}\n" for p in written)
        )  # absolute, as bandersnatch's diff-file
        return listing, [str(p.relative_to(self.origin_tree)) for p in written]

    def publish(self, listing: Path, samples: Samples | None) -> list[str]:
        """Publish the release; the .mirror/ paths it wrote."""
        before = snapshot(self.origin_tree / META_DIR)
        argv = [
            *cli(),
            "origin",
            "publish",
            "--config",
            str(self.origin_toml),
            "--no-ping",
            "--json",
        ]
        if self.code.publish_changed:
            argv += ["--changed", str(listing)]
        measured = run_measured(argv)
        result = json.loads(measured.stdout)
        if not result.get("published", True) or result["serial"] != result["previous"] + 1:
            raise SystemExit(f"publish did not make one new serial: {result}")
        if samples is not None:
            samples.add(measured, result.get("seconds"))
            record = result.get("record") or {}
            for key, value in (("mode", result.get("mode")), ("complete", record.get("complete"))):
                seen = samples.extra.setdefault(key, [])
                if value is not None and value not in seen:
                    seen.append(value)
        return [
            f"{META_DIR}/{p}" for p in changed_since(before, snapshot(self.origin_tree / META_DIR))
        ]

    # -- the contestants

    def agent_sync(self, full: bool, samples: Samples) -> None:
        toml = self.work / "agent.toml"
        argv = [*cli(), "agent", "sync", "--config", str(toml), "--json"]
        if full:
            argv.append("--full")
        measured = run_measured(argv)
        result = json.loads(measured.stdout)
        if result["status"] != "synced":
            raise SystemExit(f"agent sync: {result}")
        samples.add(measured, result.get("seconds"))
        for key, value in result.items():  # whatever else it says: its mode, why full
            if key not in ("status", "serial", "previous", "seconds", "finished", "error"):
                seen = samples.extra.setdefault(key, [])
                if value not in seen:
                    seen.append(value)
        log = [line for line in measured.stderr.splitlines() if "syncing serial" not in line]
        samples.extra["agent_log"] = log  # the last sync's: where its time went

    def raw(self, samples: Samples) -> None:
        samples.add(
            run_measured(["rsync", "-a", "--delete", self.upstream.rsync_url, f"{self.mirror}/"])
        )

    def limit(self, paths: list[str], samples: Samples) -> None:
        listing = self.work / "limit.txt"
        listing.write_text("".join(f"{p}\n" for p in sorted(set(paths))))
        samples.add(
            run_measured(
                [
                    "rsync",
                    "-a",
                    f"--files-from={listing}",
                    self.upstream.rsync_url,
                    f"{self.mirror}/",
                ]
            )
        )
        samples.extra["paths"] = len(set(paths))

    def check(self, paths: list[str]) -> None:
        """The mirror serves the origin's serial and the bytes of every changed path."""
        for rel in {STAMP_PATH, *paths}:
            if (self.mirror / rel).read_bytes() != (self.origin_tree / rel).read_bytes():
                raise SystemExit(f"mirror differs from the origin at {rel}")

    # -- the whole size

    def run(self) -> dict[str, object]:
        started = time.perf_counter()
        load_before = os.getloadavg()
        info = self.prepare()
        publish = Samples(
            "publish --changed LIST"
            if self.code.publish_changed
            else "publish (full: no --changed on this code)"
        )
        agent = Samples(
            "agent sync (default mode)"
            + ("" if self.code.agent_full else ": the full sync on this code")
        )  # the mode each sync took is in its summary ("mode", "why_full")
        full = Samples("agent sync --full") if self.code.agent_full else agent
        raw, limit = (
            Samples("rsync -a --delete (whole tree)"),
            Samples("rsync -a --files-from (changed paths)"),
        )
        with LoopbackUpstream(self.origin_tree, self.work) as self.upstream:
            config = agent_config(
                AGENT, self.mirror, self.upstream, self.secrets, self.work / "state"
            )
            (self.work / "agent.toml").write_text(dumps(config))
            contestants = [("agent", lambda p: self.agent_sync(False, agent))]
            if self.code.agent_full:
                contestants.append(("agent --full", lambda p: self.agent_sync(True, full)))
            contestants += [
                ("raw", lambda p: self.raw(raw)),
                ("limit", lambda p: self.limit(p, limit)),
            ]
            turns = len(contestants) * self.args.runs
            for run in range(self.args.runs):
                shift = run % len(contestants)
                for name, contest in contestants[shift:] + contestants[:shift]:
                    listing, written = self.release()
                    turn = f"turn {len(publish.wall) + 1}/{turns}"
                    say(f"{self.params.files:,} files, {turn}: publish, then {name}")
                    meta = self.publish(listing, publish)
                    contest(written + meta)
                    self.check(written + meta)
            floors = self.floors()
            gap = self.gap()
            say("checking the mirror against the origin (rsync --dry-run, whole tree)")
            differences, file_times, folder_times = self.differences()
        pristine = self._pristine()
        result = {
            "files": self.params.files,
            **info,
            "publish": publish.summary(),
            "agent": agent.summary(),
            "agent_full": full.summary()
            if full is not agent
            else "same as agent (no --full on this code)",
            "raw_rsync": raw.summary(),
            "limit": limit.summary(),
            "gap": gap,
            "mirror_equals_origin": differences == [],
            "differences": differences[:10],
            "files_same_bytes_other_mtime": [len(file_times), *file_times[:3]],
            "folders_differing_in_mtime_only": folder_times,
            "floors": floors,
            "generated_tree_untouched": pristine,
            "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "size_total_s": round(time.perf_counter() - started, 1),
        }
        result["ratios"] = ratios(result)
        say(f"{self.params.files:,} files done: {json.dumps(result)}")  # kept if a later size fails
        if self.args.clean:
            say(f"removing the working copies {self.work}")
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.work)], check=True)
        return result

    def floors(self) -> dict[str, float]:
        """What the commands cost with nothing to do, at this size: the agent finding
        its serial current (one stamp GET), and a publish of an empty change list."""
        toml = self.work / "agent.toml"
        noop = run_measured([*cli(), "agent", "sync", "--config", str(toml), "--json"])
        if json.loads(noop.stdout)["status"] != "unchanged":
            raise SystemExit(f"a second agent sync was not a no-op: {noop.stdout}")
        out = {"agent_noop_wall_s": round(noop.wall_s, 4)}
        if self.code.publish_changed:
            empty = self.work / "empty.txt"
            empty.write_text("")
            argv = [*cli(), "origin", "publish", "--config", str(self.origin_toml), "--no-ping"]
            nothing = run_measured([*argv, "--json", "--changed", str(empty)])
            out["publish_nothing_wall_s"] = round(nothing.wall_s, 4)
            out["publish_nothing_work_s"] = round(json.loads(nothing.stdout)["seconds"], 4)
        return out

    def gap(self) -> dict[str, object]:
        out: dict[str, object] = {"serials": GAP}
        for who in ("agent", "limit"):
            paths: list[str] = []
            for i in range(GAP):
                say(f"{self.params.files:,} files, gap for {who}: release {i + 1}/{GAP}")
                listing, written = self.release()
                paths += written + self.publish(listing, None)
            samples = Samples(who)
            if who == "agent":
                self.agent_sync(False, samples)
            else:
                self.limit(paths, samples)
            self.check(paths)
            out[f"{who}_wall_s"] = round(samples.wall[0], 4)
            if who == "agent":
                out["agent_mode"] = samples.extra.get("mode")
                out["agent_why_full"] = samples.extra.get("why_full")
            out[f"{who}_paths"] = len(set(paths))
        out["agent_over_limit"] = round(out["agent_wall_s"] / out["limit_wall_s"], 1)
        return out

    def differences(self) -> tuple[list[str], list[str], int]:
        """What a full rsync would still change (itemized), ignoring the agent's trace:
        (real differences, files with the same bytes and another mtime, count of
        folders differing in mtime only). A `--files-from` copy and the agent's
        staging leave a folder's own mtime behind; nothing serves it."""
        out = subprocess.run(
            [
                "rsync",
                "-rlpt",
                "--dry-run",
                "-i",
                "--delete",
                f"--exclude=/{META_DIR}/trace/{AGENT}",
                f"{self.origin_tree}/",
                f"{self.mirror}/",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        lines = [line for line in out.stdout.splitlines() if line.strip()]
        folder_times = [line for line in lines if re.match(r"\.d\.\.t\.* ", line)]
        file_times = [
            line[12:]
            for line in lines
            if re.match(r">f\.\.t\.* ", line)
            and (self.origin_tree / line[12:]).read_bytes()
            == (self.mirror / line[12:]).read_bytes()
        ]
        real = [line for line in lines if line not in folder_times and line[12:] not in file_times]
        return real, file_times, len(folder_times)

    def _pristine(self) -> bool:
        """No release leaked into the generated tree through a shared inode."""
        tree = self.folder / "tree"
        return all(
            b"-9." not in (tree / "simple" / p / "index.v1_json").read_bytes()
            for p in self.candidates
        )


def ratios(r: dict) -> dict[str, object]:
    def wall(key: str) -> float | None:
        item = r[key]
        return item.get("wall_s") if isinstance(item, dict) else None

    agent, limit, raw = wall("agent"), wall("limit"), wall("raw_rsync")
    full = wall("agent_full") or agent
    work = r["agent"].get("work_s")
    out = {
        "agent_over_limit": round(agent / limit, 1),
        "agent_work_over_limit": round(work / limit, 1) if work else None,
        "agent_over_full": round(agent / full, 2),
        "agent_over_raw": round(agent / raw, 2),
        "full_over_raw": round(full / raw, 2),
    }
    return out


def growth(results: list[dict]) -> dict[str, object]:
    """Cost at the largest size over cost at the smallest, and a 10M extrapolation:
    linear in the file count through the two largest sizes (cost = a + b * files),
    the growth measured between them carried on to 10M."""
    if len(results) < 2:
        return {}
    small, large = results[0], results[-1]
    prev = results[-2]
    out: dict[str, object] = {"from_files": small["files"], "to_files": large["files"]}
    measures = {
        "publish_work_s": ("publish", "work_s"),
        "publish_wall_s": ("publish", "wall_s"),
        "agent_wall_s": ("agent", "wall_s"),
        "agent_work_s": ("agent", "work_s"),
        "agent_full_wall_s": ("agent_full", "wall_s"),
        "raw_rsync_wall_s": ("raw_rsync", "wall_s"),
        "limit_wall_s": ("limit", "wall_s"),
    }
    for name, (key, field_) in measures.items():
        values = [
            r[key].get(field_) if isinstance(r[key], dict) else None for r in (small, prev, large)
        ]
        if None in values:
            continue
        s, p, big = values
        # a cost that did not grow (or fell: noise) between the two is taken as flat
        slope = max(0.0, (big - p) / (large["files"] - prev["files"]))
        out[name] = {
            "largest_over_smallest": round(big / s, 2),
            "per_million_files_s": round(slope * 1e6, 4),
            "extrapolated_10M_s": round(big + slope * (10_000_000 - large["files"]), 3),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default="10000,100000,1000000",
        help="distribution files per tree, comma-separated",
    )
    parser.add_argument("--runs", type=int, default=3, help="turns per contestant (medians)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--keep",
        type=Path,
        default=DEFAULT_CACHE,
        help="where generated trees and working copies are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--clean",
        action="store_true",
        help="remove the working copies (origin, mirror) when done; keep the generated trees",
    )
    parser.add_argument(
        "--root-pages",
        action="store_true",
        help="each release also rewrites the root pages (bandersnatch does, every run)",
    )
    parser.add_argument("--per-project", type=int, default=bt.FILES_PER_PROJECT)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    check_no_inplace()
    code = Code.detect()
    say(f"code: {code}")
    floor = median([run_measured([*cli(), "--help"]).wall_s for _ in range(3)])
    results = []
    for size in sorted(sizes):
        bench = SizeBench(args.keep, bt.Params(size, args.per_project), code, args)
        results.append(bench.run())
    report = {
        "code": code.__dict__,
        "cli_floor_s": round(floor, 3),  # `mirrorfleet --help`: interpreter start-up and imports
        "page_cache": "warm (never dropped)",
        "root_pages_rewritten": args.root_pages,
        "sizes": results,
        "growth": growth(results),
        "targets": TARGETS,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


def print_table(report: dict) -> None:
    code = report["code"]
    print(f"code {code['commit']} ({code['source']}); CLI floor {report['cli_floor_s']}s")
    columns = ("files", "publish work", "publish wall", "agent", "agent full", "raw", "limit")
    print(" ".join(f"{c:>12}" for c in (*columns, "agent/limit", "gap agent")))
    for r in report["sizes"]:
        full = r["agent_full"] if isinstance(r["agent_full"], dict) else r["agent"]
        row = [
            f"{r['files']:,}",
            r["publish"].get("work_s", "-"),
            r["publish"]["wall_s"],
            r["agent"]["wall_s"],
            full["wall_s"],
            r["raw_rsync"]["wall_s"],
            r["limit"]["wall_s"],
            r["ratios"]["agent_over_limit"],
            r["gap"]["agent_wall_s"],
        ]
        print(" ".join(f"{v:>12}" for v in row))
    for name, g in report["growth"].items():
        if isinstance(g, dict):
            print(f"  {name}: x{g['largest_over_smallest']} largest/smallest", end="")
            print(f", ~{g['extrapolated_10M_s']}s at 10M (linear through the two largest)")


if __name__ == "__main__":
    main()
