"""A PyPI mirror tree in bandersnatch's layout, generated fast, for scale benchmarks.

    .venv/bin/python bench/bandersnatch_tree.py DEST --files 100000

Layout (bandersnatch's defaults, `simple-format = ALL` less the v1_html copy)::

    packages/aa/bb/<60 more hex>/<filename>   one folder per file: the blake2b-256 of
                                              the file, as PyPI's own URLs
    simple/<project>/index.html               PEP 503 page: ../../packages/...#sha256=
    simple/<project>/index.v1_json            PEP 691 JSON page
    simple/index.html, simple/index.v1_json   root pages listing every project

About 17 files per project (PyPI: ~10M files over ~600k projects), drawn from a
seeded geometric distribution, so most projects are small and a few have 50+
files. File bodies are a few hundred random bytes (not real wheels: nothing here
installs them); the sha256 in every page is the real one of the body.

Speed over safety: files are written directly (no temporary name, no fsync), which
is fine for a tree nobody serves while it is made. `add_release` is the other way
round: it writes like bandersnatch does on a live tree (temporary name, rename) and
returns the absolute paths it wrote, as bandersnatch's diff-file lists them.

Standard library only.
"""

from __future__ import annotations

import argparse
import calendar
import hashlib
import html
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

GENERATOR_VERSION = 1
FILES_PER_PROJECT = 17
MIN_BODY, MAX_BODY = 200, 600  # bytes; mean 400
UPLOAD_EPOCH = 1_600_000_000  # upload times spread over the years after this
REQUIRES_PYTHON = ">=3.8"
MARKER = "complete.json"  # next to tree/: written last, with the parameters

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@dataclass(frozen=True)
class Params:
    files: int  # distribution files (packages/); pages and root pages come on top
    per_project: int = FILES_PER_PROJECT
    seed: int = 1

    def key(self) -> str:
        """The cache folder's name: every parameter that changes the bytes."""
        return f"bandersnatch-v{GENERATOR_VERSION}-f{self.files}-p{self.per_project}-s{self.seed}"


@dataclass(frozen=True)
class FileEntry:
    filename: str
    path: str  # tree-relative: packages/aa/bb/<hash>/<filename>
    sha256: str
    size: int
    uploaded: int

    def as_json(self) -> dict[str, object]:
        return {
            "filename": self.filename,
            "url": f"../../{self.path}",
            "hashes": {"sha256": self.sha256},
            "requires-python": REQUIRES_PYTHON,
            "size": self.size,
            "upload-time": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(self.uploaded)),
            "yanked": False,
        }

    @classmethod
    def from_json(cls, doc: dict) -> FileEntry:
        stamp = time.strptime(doc["upload-time"][:19], "%Y-%m-%dT%H:%M:%S")
        return cls(
            filename=doc["filename"],
            path=doc["url"].removeprefix("../../"),
            sha256=doc["hashes"]["sha256"],
            size=doc["size"],
            uploaded=calendar.timegm(stamp),
        )


def project_name(index: int) -> str:
    """Names of PyPI-like spread: varied lengths, so simple/ is not one sorted run."""
    words = ("py", "django", "flask", "aws", "data", "tool", "kit", "lib", "sdk", "ml")
    return f"{words[index % len(words)]}-{index:06d}-{words[(index // 10) % len(words)]}"


def _dist(project: str) -> str:
    return project.replace("-", "_")


def file_name(project: str, version: str, sdist: bool) -> str:
    if sdist:
        return f"{_dist(project)}-{version}.tar.gz"
    return f"{_dist(project)}-{version}-py3-none-any.whl"


def content_path(body: bytes, filename: str) -> str:
    """packages/aa/bb/<rest>/<filename>, from the body's blake2b-256, as PyPI does."""
    digest = hashlib.blake2b(body, digest_size=32).hexdigest()
    return f"packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"


def render_html(project: str, files: list[FileEntry]) -> bytes:
    name = html.escape(project)
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta name="pypi:repository-version" content="1.1">',
        f"    <title>Links for {name}</title>",
        "  </head>",
        "  <body>",
        f"    <h1>Links for {name}</h1>",
    ]
    requires = html.escape(REQUIRES_PYTHON)
    for f in files:
        href = html.escape(f"../../{f.path}#sha256={f.sha256}")
        lines.append(
            f'    <a href="{href}" data-requires-python="{requires}">'
            f"{html.escape(f.filename)}</a><br/>"
        )
    lines += ["  </body>", "</html>", ""]
    return "\n".join(lines).encode()


def render_json(project: str, files: list[FileEntry]) -> bytes:
    versions = list(dict.fromkeys(_version(f.filename) for f in files))
    doc = {
        "meta": {"api-version": "1.1", "_last-serial": 0},
        "name": project,
        "versions": versions,
        "files": [f.as_json() for f in files],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _version(filename: str) -> str:
    stem = filename.removesuffix(".tar.gz").removesuffix(".whl")
    return stem.split("-")[1]


def render_root(projects: list[str]) -> tuple[bytes, bytes]:
    lines = [
        "<!DOCTYPE html>",
        "<html>",
        "  <head>",
        '    <meta name="pypi:repository-version" content="1.1">',
        "    <title>Simple index</title>",
        "  </head>",
        "  <body>",
    ]
    lines += [f'    <a href="{p}/">{p}</a><br/>' for p in projects]
    lines += ["  </body>", "</html>"]
    doc = {
        "meta": {"api-version": "1.1", "_last-serial": 0},
        "projects": [{"name": p} for p in projects],
    }
    return "\n".join(lines).encode(), json.dumps(doc, separators=(",", ":")).encode()


def plan(params: Params) -> list[int]:
    """Files per project: geometric with mean `per_project`, until `files` are placed."""
    rng = random.Random(params.seed)
    counts, left = [], params.files
    p = 1 / params.per_project
    while left > 0:
        n = 1
        while rng.random() > p and n < 50 * params.per_project:
            n += 1
        n = min(n, left)
        counts.append(n)
        left -= n
    return counts


def generate(tree: Path, params: Params, progress: Progress = _quiet) -> dict[str, object]:
    """Write the whole tree under `tree` (which must not hold one yet); its numbers."""
    started = time.monotonic()
    old_umask = os.umask(0o022)
    try:
        counts = plan(params)
        rng = random.Random(params.seed + 1)
        simple = tree / "simple"
        simple.mkdir(parents=True)
        made: set[str] = set()  # the aa/ and aa/bb/ folders made so far
        names: list[str] = []
        done = 0
        last_report = time.monotonic()
        for index, count in enumerate(counts):
            project = project_name(index)
            names.append(project)
            files = []
            for k in range(count):
                sdist = k % 3 == 2
                filename = file_name(project, f"1.{k // 3}.0", sdist)
                body = filename.encode() + b"\n" + rng.randbytes(rng.randint(MIN_BODY, MAX_BODY))
                rel = content_path(body, filename)
                folder = rel.rsplit("/", 1)[0]
                if folder[:14] not in made:  # packages/aa/bb
                    os.makedirs(tree / folder[:14], exist_ok=True)
                    made.add(folder[:14])
                os.mkdir(tree / folder)
                fd = os.open(tree / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, body)
                os.close(fd)
                uploaded = UPLOAD_EPOCH + index * 600 + k
                files.append(
                    FileEntry(filename, rel, hashlib.sha256(body).hexdigest(), len(body), uploaded)
                )
            page_dir = simple / project
            page_dir.mkdir()
            (page_dir / "index.v1_json").write_bytes(render_json(project, files))
            (page_dir / "index.html").write_bytes(render_html(project, files))
            done += count
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                rate = done / (last_report - started)
                progress(
                    f"generated {done:,}/{params.files:,} files "
                    f"({rate:,.0f}/s, {(params.files - done) / rate:.0f}s left)"
                )
        root_html, root_json = render_root(sorted(names))
        (simple / "index.v1_json").write_bytes(root_json)
        (simple / "index.html").write_bytes(root_html)
    finally:
        os.umask(old_umask)
    return {
        "files": params.files,
        "projects": len(counts),
        "pages": 2 * len(counts) + 2,
        "generate_s": round(time.monotonic() - started, 1),
    }


def cached_tree(cache: Path, params: Params, progress: Progress = _quiet) -> tuple[Path, dict]:
    """The tree for `params` under `cache`, generated unless a complete one is there.

    Complete means the marker holds exactly these parameters: it is written after the
    last file, so a generation killed halfway is thrown away and done again."""
    folder = cache / params.key()
    marker = folder / MARKER
    want = {"generator": GENERATOR_VERSION, **params.__dict__}
    try:
        info = json.loads(marker.read_text())
        if {k: info.get(k) for k in want} == want:
            progress(f"reusing {folder / 'tree'} (generated in {info['generate_s']}s)")
            return folder / "tree", info
    except (FileNotFoundError, ValueError):
        pass
    if folder.exists():
        progress(f"removing the incomplete {folder}")
        _rmtree(folder)
    folder.mkdir(parents=True)
    progress(f"generating {params.files:,} files into {folder / 'tree'}")
    info = {**want, **generate(folder / "tree", params, progress)}
    info["disk_bytes"] = disk_usage(folder / "tree")
    marker.write_text(json.dumps(info, indent=1) + "\n")
    return folder / "tree", info


def disk_usage(path: Path) -> int:
    """Bytes allocated (du), hard links counted once."""
    import subprocess

    out = subprocess.run(["du", "-sB1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def _rmtree(path: Path) -> None:
    import subprocess

    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _write_replace(path: Path, data: bytes) -> None:
    """bandersnatch's `rewrite()`: a temporary name in the same folder, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as out:
        out.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def add_release(
    tree: Path, project: str, version: str, seed: int = 0, root_pages: bool = False
) -> list[Path]:
    """One new file for an existing project, as bandersnatch writes it on a live tree:
    the file (a new folder of its own), then the project's JSON and HTML pages.
    `root_pages`: also rewrite the root pages (same content, new mtime), as bandersnatch
    does at the end of every run. Returns the absolute paths written, in write order."""
    page_dir = tree / "simple" / project
    files = [
        FileEntry.from_json(doc)
        for doc in json.loads((page_dir / "index.v1_json").read_bytes())["files"]
    ]
    rng = random.Random(f"{project}-{version}-{seed}")
    filename = file_name(project, version, sdist=False)
    body = filename.encode() + b"\n" + rng.randbytes(rng.randint(MIN_BODY, MAX_BODY))
    rel = content_path(body, filename)
    target = tree / rel
    target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _write_replace(target, body)
    files.append(
        FileEntry(filename, rel, hashlib.sha256(body).hexdigest(), len(body), int(time.time()))
    )
    written = [target]
    for page, data in (
        ("index.v1_json", render_json(project, files)),
        ("index.html", render_html(project, files)),
    ):
        _write_replace(page_dir / page, data)
        written.append(page_dir / page)
    if root_pages:
        for page in ("index.v1_json", "index.html"):
            path = tree / "simple" / page
            _write_replace(path, path.read_bytes())
            written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="cache folder: DEST/<parameters>/tree")
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--per-project", type=int, default=FILES_PER_PROJECT)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    params = Params(args.files, args.per_project, args.seed)
    tree, info = cached_tree(args.dest, params, lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps({"tree": str(tree), **info}, indent=1))


if __name__ == "__main__":
    main()
