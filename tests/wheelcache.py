"""Real distributions for the client tests (issue 16), fetched once with `pip download`
and kept outside the repository, in /var/cache/mirrorfleet/wheels:

    set/     requests and its dependencies, packaging, setuptools and wheel: resolved
             together, the files the client interpreter takes (wheels)
    sdist/   six as an sdist only (--no-binary): no pyproject.toml, so every client
             builds it with setuptools (and Debian's pip with wheel) from the index
    tools/   the latest pip wheel and the latest uv wheel (uv's binary is in it)
    complete.json   written last: what is there, for which interpreter

    .venv/bin/python tests/wheelcache.py          # scripts/setup.sh runs this

A complete cache is used as it is, without the network. A missing or partial one (a
killed download, another interpreter) is fetched again into a staging folder and
renamed into place under a lock, so a reader never sees half of one. The download
goes through this machine's pip and its normal configuration (that is how it reaches
the registry); the clients under test never use that configuration.

The files are chosen for the interpreter the client tests install into, Debian's
python3 (CLIENT_PYTHON), so its own pip does the download.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mirrorfleet.content.dists import normalize

CACHE = Path(os.environ.get("MIRRORFLEET_WHEEL_CACHE", "/var/cache/mirrorfleet/wheels"))
CLIENT_PYTHON = "/usr/bin/python3"  # Debian's python3: its pip, and the clients' venvs
CACHE_VERSION = 1
# Resolved together, so the dependencies (charset-normalizer, idna, urllib3, certifi)
# come along at versions that fit each other.
SET = ("requests", "packaging", "setuptools", "wheel")
SDIST_ONLY = "six"
TOOLS = ("pip", "uv")
DOWNLOAD_TIMEOUT = 300  # seconds for each pip download; the whole set is ~25 MB
MAX_BYTES = 60 * 1024 * 1024  # "tens of MB at most": a bigger download is a mistake
MARKER = "complete.json"


class CacheError(RuntimeError):
    pass


@dataclass(frozen=True)
class Dist:
    """One cached file: its project (normalized), version and path."""

    project: str
    version: str
    path: Path


@dataclass(frozen=True)
class WheelCache:
    root: Path
    python: str  # "3.11": the interpreter the files fit
    set: tuple[Dist, ...]
    sdist: Dist
    tools: tuple[Dist, ...]

    def tool(self, project: str) -> Path:
        return next(d.path for d in self.tools if d.project == project)

    def tool_version(self, project: str) -> str:
        return next(d.version for d in self.tools if d.project == project)

    @property
    def dists(self) -> tuple[Dist, ...]:
        """Every file a mirror will serve: the set and the sdist (not the tools)."""
        return (*self.set, self.sdist)

    def versions(self) -> dict[str, str]:
        """project -> version of every project a mirror will serve."""
        return {d.project: d.version for d in self.dists}


def parse(path: Path) -> Dist:
    """Project and version from a wheel's or an sdist's file name."""
    name = path.name
    if name.endswith(".whl"):
        project, version = name.split("-")[:2]
    elif name.endswith(".tar.gz"):
        project, _, version = name[: -len(".tar.gz")].rpartition("-")
    else:
        raise CacheError(f"unexpected file in the wheel cache: {path}")
    return Dist(normalize(project), version, path)


def python_version(python: str = CLIENT_PYTHON) -> str:
    proc = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        raise CacheError(f"{python} does not run: {proc.stderr.strip()}")
    return proc.stdout.strip()


def load(root: Path = CACHE) -> WheelCache | None:
    """The cache as complete.json lists it, or None when it is missing or not whole."""
    try:
        marker = json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if marker.get("version") != CACHE_VERSION:
        return None
    try:
        groups = {key: [root / rel for rel in marker[key]] for key in ("set", "sdist", "tools")}
        python = marker["python"]
    except (KeyError, TypeError):
        return None
    if not all(p.is_file() for paths in groups.values() for p in paths):
        return None
    if len(groups["sdist"]) != 1:
        return None
    return WheelCache(
        root,
        python,
        tuple(parse(p) for p in groups["set"]),
        parse(groups["sdist"][0]),
        tuple(parse(p) for p in groups["tools"]),
    )


def ensure(root: Path = CACHE, log=print) -> WheelCache:
    """The complete cache: as it is, or downloaded now (bounded in time and size)."""
    python = python_version()
    cache = load(root)
    if cache is not None and cache.python == python:
        return cache
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / f"{root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        cache = load(root)  # another process may have made it while we waited
        if cache is not None and cache.python == python:
            return cache
        staging = root.with_name(f"{root.name}.staging-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            _download(staging, python, log)
            shutil.rmtree(root, ignore_errors=True)
            staging.rename(root)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    cache = load(root)
    if cache is None:
        raise CacheError(f"{root}: downloaded, but not complete")
    return cache


def _pip_download(dest: Path, *args: str) -> list[Path]:
    before = set(dest.glob("*")) if dest.exists() else set()
    argv = [CLIENT_PYTHON, "-m", "pip", "download", "-q", "--progress-bar", "off"]
    argv += ["--timeout", "30", "--retries", "2", "-d", str(dest), *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=DOWNLOAD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CacheError(f"pip download {' '.join(args)}: no end in {DOWNLOAD_TIMEOUT}s") from None
    if proc.returncode != 0:
        raise CacheError(f"pip download {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return sorted(set(dest.glob("*")) - before)


def _download(staging: Path, python: str, log) -> None:
    started = time.monotonic()
    log(f"==> pip download into {staging.name}: {' '.join(SET)}, {SDIST_ONLY} (sdist), tools")
    files = {
        "set": _pip_download(staging / "set", "--only-binary", ":all:", *SET),
        "sdist": _pip_download(staging / "sdist", "--no-deps", "--no-binary", ":all:", SDIST_ONLY),
        "tools": _pip_download(staging / "tools", "--no-deps", "--only-binary", ":all:", *TOOLS),
    }
    got = {parse(p).project for p in files["set"]}
    missing = {normalize(p) for p in SET} - got
    if missing or len(files["sdist"]) != 1 or len(files["tools"]) != len(TOOLS):
        raise CacheError(f"pip download gave an unexpected set: {files}")
    size = sum(p.stat().st_size for paths in files.values() for p in paths)
    if size > MAX_BYTES:
        raise CacheError(f"the download is {size} bytes, more than {MAX_BYTES}")
    marker = {
        "version": CACHE_VERSION,
        "python": python,
        **{k: [p.relative_to(staging).as_posix() for p in v] for k, v in files.items()},
        "bytes": size,
    }
    (staging / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    log(f"    {size / 1e6:.1f} MB in {time.monotonic() - started:.0f}s")


def describe(cache: WheelCache) -> Mapping[str, str]:
    return {
        **{d.path.name: d.version for d in cache.dists},
        **{d.path.name: d.version for d in cache.tools},
    }


def main() -> int:
    try:
        cache = ensure()
    except CacheError as exc:
        print(f"wheel cache: {exc}", file=sys.stderr)
        return 1
    print(f"wheel cache {cache.root} (python {cache.python}): {len(describe(cache))} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
