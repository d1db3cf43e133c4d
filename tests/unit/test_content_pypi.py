"""The PEP 503/691 content type: valid pages, valid wheels, safe writes, and the real pip."""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import http.server
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urldefrag

import pytest

from mirrorfleet.content import pypi

N_PROJECTS = 6
VERSIONS = ["1.0.0", "1.0.1"]
TIMEOUT = 120


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        if self.links and data.strip():
            self.text.append(data.strip())


def anchors(page: Path | str) -> list[dict[str, str | None]]:
    parser = _Anchors()
    parser.feed(page.read_text() if isinstance(page, Path) else page)
    return parser.links


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    pypi.generate(root, N_PROJECTS, versions=len(VERSIONS))
    return root


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("demo-00001", "demo-00001"),
        ("Foo.Bar_baz", "foo-bar-baz"),
        ("a__-..b", "a-b"),
        ("UPPER", "upper"),
    ],
)
def test_normalize(name: str, expected: str) -> None:
    assert pypi.normalize(name) == expected


@pytest.mark.parametrize(
    ("project", "version"),
    [("bad name", "1.0"), ("-lead", "1.0"), ("ok", "1.0-1"), ("ok", "latest"), ("ok", "1.0+l")],
)
def test_bad_names_and_versions_are_refused(tmp_path: Path, project: str, version: str) -> None:
    with pytest.raises(ValueError, match="bad"):
        pypi.make_wheel(tmp_path, project, version)
    assert list(tmp_path.iterdir()) == []


def test_unnormalized_name_lands_under_normalized_dirs(tmp_path: Path) -> None:
    wheel = pypi.add_release(tmp_path, "Foo.Bar_baz", "2.0")
    assert wheel == tmp_path / "packages/foo-bar-baz/foo_bar_baz-2.0-py3-none-any.whl"
    assert list(pypi.project_index_pages(tmp_path)) == ["foo-bar-baz"]
    doc = json.loads((tmp_path / "simple/foo-bar-baz/index.v1_json").read_text())
    assert doc["name"] == "foo-bar-baz"


# ---------------------------------------------------------------- pages


def expected_versions(i: int) -> list[str]:
    """The first project also has the yanked release (and an sdist of 1.0.0)."""
    return [*VERSIONS, pypi.YANKED_VERSION] if i == 0 else VERSIONS


def expected_files(i: int) -> list[str]:
    dist = f"demo_{i:05d}"
    names = [f"{dist}-{v}-py3-none-any.whl" for v in expected_versions(i)]
    if i == 0:
        names.insert(1, f"{dist}-{pypi.SDIST_VERSION}.tar.gz")  # sorted by version, then name
    return names


@pytest.mark.parametrize("i", range(N_PROJECTS))
def test_project_html_hashes_match_files(tree: Path, i: int) -> None:
    page = tree / "simple" / f"demo-{i:05d}" / "index.html"
    links = anchors(page)
    assert [urldefrag(a["href"] or "")[0].rsplit("/", 1)[1] for a in links] == expected_files(i)
    for link in links:
        url, frag = urldefrag(link["href"] or "")
        assert url.startswith("../../packages/demo-")
        target = (page.parent / url).resolve()
        assert target.is_file()
        assert frag == f"sha256={sha256(target)}"
        assert link["data-requires-python"] == ">=3.8"  # unescaped from &gt;=3.8
        metadata = target.with_name(target.name + ".metadata")
        if target.name.endswith(".whl"):
            # PEP 658/714: both names, equal, the hash of <file>.metadata, which is
            # exactly the wheel's METADATA
            assert link["data-core-metadata"] == f"sha256={sha256(metadata)}"
            assert link["data-dist-info-metadata"] == link["data-core-metadata"]
            with zipfile.ZipFile(target) as zf:
                dist, version = target.name.split("-")[:2]
                inside = zf.read(f"{dist}-{version}.dist-info/METADATA")
            assert metadata.read_bytes() == inside
        else:
            assert "data-core-metadata" not in link and not metadata.exists()
        yanked = version_of(target.name) == pypi.YANKED_VERSION
        assert link.get("data-yanked", "absent") == (pypi.YANK_REASON if yanked else "absent")
    assert "&gt;=3.8" in page.read_text()


def version_of(filename: str) -> str:
    return filename.split("-")[1].removesuffix(".tar.gz")


@pytest.mark.parametrize("i", range(N_PROJECTS))
def test_project_json_agrees_with_html(tree: Path, i: int) -> None:
    name = f"demo-{i:05d}"
    page_dir = tree / "simple" / name
    doc = json.loads((page_dir / "index.v1_json").read_text())
    assert doc["meta"] == {"api-version": "1.1"}
    assert doc["name"] == name
    assert doc["versions"] == expected_versions(i)
    from_html = {
        urldefrag(a["href"] or "")[0]: urldefrag(a["href"] or "")[1]
        for a in anchors(page_dir / "index.html")
    }
    from_json = {f["url"]: "sha256=" + f["hashes"]["sha256"] for f in doc["files"]}
    assert from_json == from_html
    for f in doc["files"]:
        target = (page_dir / f["url"]).resolve()
        assert f["filename"] == target.name
        assert f["size"] == target.stat().st_size
        assert f["requires-python"] == ">=3.8"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", f["upload-time"])
        # PEP 714: JSON carries only the new key (pip 22.3 to 23.1 fail on the old one)
        assert "dist-info-metadata" not in f
        if target.name.endswith(".whl"):
            metadata = target.with_name(target.name + ".metadata")
            assert f["core-metadata"] == {"sha256": sha256(metadata)}
        else:
            assert "core-metadata" not in f
        yanked = version_of(f["filename"]) == pypi.YANKED_VERSION
        assert f.get("yanked", False) == (pypi.YANK_REASON if yanked else False)


def test_root_lists_every_project(tree: Path) -> None:
    names = [f"demo-{i:05d}" for i in range(N_PROJECTS)]
    assert [a["href"] for a in anchors(tree / "simple/index.html")] == [f"{n}/" for n in names]
    doc = json.loads((tree / "simple/index.v1_json").read_text())
    assert doc == {"meta": {"api-version": "1.1"}, "projects": [{"name": n} for n in names]}
    assert all(pypi.normalize(n) == n for n in names)
    pages = pypi.project_index_pages(tree)
    assert pages == {n: tree / "simple" / n / "index.html" for n in names}


def test_versions_sort_by_pep440_not_text(tmp_path: Path) -> None:
    for version in ["1.0.10", "1.0.2", "1.0.0", "1.0.0rc1", "1.0.0.dev1", "1.0.0.post1"]:
        pypi.add_release(tmp_path, "sorty", version)
    doc = json.loads((tmp_path / "simple/sorty/index.v1_json").read_text())
    expected = ["1.0.0.dev1", "1.0.0rc1", "1.0.0", "1.0.0.post1", "1.0.2", "1.0.10"]
    assert doc["versions"] == expected
    assert [f["filename"].split("-")[1] for f in doc["files"]] == expected


def test_generate_reports_progress(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    names = pypi.generate(tmp_path, 3, prefix="p", progress=lambda d, t: seen.append((d, t)))
    assert names == ["p-00000", "p-00001", "p-00002"]
    assert seen == [(1, 3), (2, 3), (3, 3)]


# ---------------------------------------------------------------- wheels


@pytest.mark.parametrize("payload", [0, 4096])
def test_wheel_is_valid(tmp_path: Path, payload: int) -> None:
    wheel = pypi.make_wheel(tmp_path, "Demo.Thing", "3.1.4", payload_bytes=payload)
    assert wheel.name == "demo_thing-3.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        info = "demo_thing-3.1.4.dist-info"
        rows = list(csv.reader(io.StringIO(zf.read(f"{info}/RECORD").decode())))
        assert sorted(r[0] for r in rows) == sorted(names)
        for path, digest, size in rows:
            if path == f"{info}/RECORD":
                assert (digest, size) == ("", "")
                continue
            data = zf.read(path)
            b64 = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == f"sha256={b64}"
            assert int(size) == len(data)
        metadata = zf.read(f"{info}/METADATA").decode()
        for line in ["Metadata-Version: 2.1", "Name: Demo.Thing", "Version: 3.1.4"]:
            assert line in metadata.splitlines()
        assert "Requires-Python: >=3.8" in metadata.splitlines()
        assert zf.read(f"{info}/WHEEL").decode().splitlines() == [
            "Wheel-Version: 1.0",
            "Generator: mirrorfleet",
            "Root-Is-Purelib: true",
            "Tag: py3-none-any",
        ]
        assert '__version__ = "3.1.4"' in zf.read("demo_thing/__init__.py").decode()
        filler = [n for n in names if n.endswith("filler.bin")]
        assert [zf.getinfo(n).file_size for n in filler] == ([payload] if payload else [])


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        pypi.generate(root, 3, versions=2, payload_bytes=1000)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    # per project: 2 wheels and their .metadata, 2 pages; the first project also has
    # an sdist and a yanked wheel with its .metadata; 2 root pages
    assert len(files_a) == 3 * (2 * 2 + 2) + 3 + 2
    for rel in files_a:
        if rel.name == "index.v1_json" and rel.parent.name != "simple":
            # upload-time is each file's mtime: equal only if both trees were made in one second
            docs = [json.loads((root / rel).read_text()) for root in (a, b)]
            for doc in docs:
                for f in doc["files"]:
                    f.pop("upload-time")
            assert docs[0] == docs[1]
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_the_sdist_is_buildable_and_deterministic(tmp_path: Path) -> None:
    one = pypi.make_sdist(tmp_path / "a", "Demo.Thing", "1.0.0")
    two = pypi.make_sdist(tmp_path / "b", "Demo.Thing", "1.0.0")
    assert one.name == "demo_thing-1.0.0.tar.gz"
    assert one.read_bytes() == two.read_bytes()
    with tarfile.open(one) as tf:
        assert sorted(tf.getnames()) == [
            "demo_thing-1.0.0/PKG-INFO",
            "demo_thing-1.0.0/demo_thing/__init__.py",
            "demo_thing-1.0.0/pyproject.toml",
        ]
        pyproject = tomllib.loads(tf.extractfile("demo_thing-1.0.0/pyproject.toml").read().decode())
        info = tf.extractfile("demo_thing-1.0.0/PKG-INFO").read().decode()
    assert pyproject["build-system"]["build-backend"] == "setuptools.build_meta"
    assert pyproject["project"] == {
        "name": "Demo.Thing",
        "version": "1.0.0",
        "description": "Demo package Demo.Thing generated by mirrorfleet",
        "requires-python": ">=3.8",
    }
    assert "Version: 1.0.0" in info.splitlines()


def test_the_sdist_builds_a_wheel(tmp_path: Path) -> None:
    sdist = pypi.make_sdist(tmp_path, "demo-00000", "1.0.0")
    with tarfile.open(sdist) as tf:
        tf.extractall(tmp_path / "src", filter="data")
    src = tmp_path / "src" / "demo_00000-1.0.0"
    code = "import setuptools.build_meta as b, sys; print(b.build_wheel(sys.argv[1]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "out")],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    built = tmp_path / "out" / proc.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(built) as zf:
        assert '__version__ = "1.0.0"' in zf.read("demo_00000/__init__.py").decode()


def test_yank_is_kept_across_rewrites(tmp_path: Path) -> None:
    pypi.add_release(tmp_path, "y", "1.0")
    pypi.add_release(tmp_path, "y", "2.0")
    written: list[Path] = []
    pypi.yank(tmp_path, "y", "2.0", "bad build", written=written)
    assert [p.name for p in written] == ["index.v1_json", "index.html"]
    pypi.add_release(tmp_path, "y", "2.1")  # the pages are rewritten from the files
    doc = json.loads((tmp_path / "simple/y/index.v1_json").read_text())
    assert {f["filename"]: f.get("yanked") for f in doc["files"]} == {
        "y-1.0-py3-none-any.whl": None,
        "y-2.0-py3-none-any.whl": "bad build",
        "y-2.1-py3-none-any.whl": None,
    }
    assert 'data-yanked="bad build"' in (tmp_path / "simple/y/index.html").read_text()
    with pytest.raises(ValueError, match=r"no release 9\.0"):
        pypi.yank(tmp_path, "y", "9.0")


def test_different_wheels_differ(tmp_path: Path) -> None:
    one = pypi.make_wheel(tmp_path, "x", "1.0", payload_bytes=64).read_bytes()
    two = pypi.make_wheel(tmp_path, "x", "1.1", payload_bytes=64).read_bytes()
    assert one != two


# ---------------------------------------------------------------- add_release


@pytest.fixture
def replaces(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every os.replace target and, for a page, check what it names already exists."""
    calls: list[Path] = []
    real = os.replace

    def spy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        dst = Path(dst)
        if dst.name == "index.html":
            for link in anchors(Path(src).read_text()):
                target = dst.parent / urldefrag(link["href"] or "")[0]
                assert (target / "index.html" if link["href"].endswith("/") else target).is_file()
        calls.append(dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    return calls


def test_add_release_writes_wheel_then_project_then_root(
    tmp_path: Path, replaces: list[Path]
) -> None:
    wheel = pypi.add_release(tmp_path, "demo-00001", "1.0.0")
    assert replaces == [
        wheel,
        wheel.with_name(wheel.name + ".metadata"),
        tmp_path / "simple/demo-00001/index.v1_json",
        tmp_path / "simple/demo-00001/index.html",
        tmp_path / "simple/index.v1_json",
        tmp_path / "simple/index.html",
    ]
    replaces.clear()
    pypi.add_release(tmp_path, "demo-00001", "1.0.1")
    assert replaces[0].name == "demo_00001-1.0.1-py3-none-any.whl"
    assert replaces[1].name == "demo_00001-1.0.1-py3-none-any.whl.metadata"
    assert [p.name for p in replaces[2:]] == ["index.v1_json", "index.html"]  # root unchanged


def test_add_release_rewrites_the_root_pages_for_a_new_project_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The root pages list every project: reading them back costs as much as the tree
    is large, so a release of a known project does not touch them at all."""
    pypi.generate(tmp_path, 3)
    calls: list[Path] = []
    real = pypi.write_root_index
    monkeypatch.setattr(pypi, "write_root_index", lambda tree: calls.append(tree) or real(tree))
    written: list[Path] = []
    pypi.add_release(tmp_path, "demo-00001", "2.0", written=written)
    assert calls == []
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "packages/demo-00001/demo_00001-2.0-py3-none-any.whl",
        "packages/demo-00001/demo_00001-2.0-py3-none-any.whl.metadata",
        "simple/demo-00001/index.v1_json",
        "simple/demo-00001/index.html",
    ]
    written.clear()
    pypi.add_release(tmp_path, "Fresh.One", "1.0", written=written)
    assert calls == [tmp_path]
    assert [p.relative_to(tmp_path).as_posix() for p in written][-2:] == [
        "simple/index.v1_json",
        "simple/index.html",
    ]
    assert "fresh-one" in (tmp_path / "simple/index.html").read_text()
    written.clear()
    pypi.add_release(tmp_path, "Fresh.One", "1.0", written=written)
    assert written == []  # nothing new, nothing written


def test_add_release_is_idempotent(tmp_path: Path, replaces: list[Path]) -> None:
    wheel = pypi.add_release(tmp_path, "demo", "1.0.0", payload_bytes=10)
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    replaces.clear()
    assert pypi.add_release(tmp_path, "demo", "1.0.0", payload_bytes=10) == wheel
    assert replaces == []
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.rglob(".*")]  # no temp files left behind


def test_add_release_refuses_changing_a_published_file(tmp_path: Path) -> None:
    pypi.add_release(tmp_path, "demo", "1.0.0")
    with pytest.raises(FileExistsError, match="different content"):
        pypi.add_release(tmp_path, "demo", "1.0.0", payload_bytes=1)


def test_written_files_are_world_readable(tmp_path: Path) -> None:
    wheel = pypi.add_release(tmp_path, "demo", "1.0.0")
    for path in [wheel, tmp_path / "simple/index.html", tmp_path / "simple/demo/index.html"]:
        assert path.stat().st_mode & 0o044 == 0o044 & ~_umask()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------- the real pip


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    root = tmp_path_factory.mktemp("served")
    pypi.generate(root, 5)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}/simple/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", NO_PROXY="*", no_proxy="*")
    proc = subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, timeout=TIMEOUT, env=env
    )
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.mark.skipif(importlib.util.find_spec("ensurepip") is None, reason="no ensurepip")
def test_pip_installs_and_upgrades_from_the_tree(served: tuple[Path, str], tmp_path: Path) -> None:
    root, index = served
    _run(sys.executable, "-m", "venv", tmp_path / "venv")
    py = tmp_path / "venv/bin/python"
    pip = [py, "-m", "pip", "--isolated", "install", "--index-url", index, "--no-cache-dir"]
    pip += ["--timeout", "30", "--retries", "0"]
    _run(*pip, "demo-00003")
    version = [py, "-c", "import demo_00003; print(demo_00003.__version__)"]
    assert _run(*version).stdout.strip() == "1.0.0"

    pypi.add_release(root, "demo-00003", "1.0.1")
    _run(*pip, "-U", "demo-00003")
    assert _run(*version).stdout.strip() == "1.0.1"

    # the first project: 1.1.0 is yanked, so pip takes 1.0.0 (the wheel, not the sdist)
    _run(*pip, "demo-00000")
    first = [py, "-c", "import demo_00000; print(demo_00000.__version__)"]
    assert _run(*first).stdout.strip() == "1.0.0"
    pinned = _run(*pip, "demo-00000==1.1.0")  # PEP 592: a pin may still take it, warned
    assert _run(*first).stdout.strip() == "1.1.0"
    assert pypi.YANK_REASON in pinned.stdout + pinned.stderr
