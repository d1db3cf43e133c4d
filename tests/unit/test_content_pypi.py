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
import threading
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


@pytest.mark.parametrize("i", range(N_PROJECTS))
def test_project_html_hashes_match_files(tree: Path, i: int) -> None:
    page = tree / "simple" / f"demo-{i:05d}" / "index.html"
    links = anchors(page)
    assert len(links) == len(VERSIONS)
    for link in links:
        url, frag = urldefrag(link["href"] or "")
        assert url.startswith("../../packages/demo-")
        target = (page.parent / url).resolve()
        assert target.is_file()
        assert frag == f"sha256={sha256(target)}"
        assert link["data-requires-python"] == ">=3.8"  # unescaped from &gt;=3.8
    assert "&gt;=3.8" in page.read_text()


@pytest.mark.parametrize("i", range(N_PROJECTS))
def test_project_json_agrees_with_html(tree: Path, i: int) -> None:
    name = f"demo-{i:05d}"
    page_dir = tree / "simple" / name
    doc = json.loads((page_dir / "index.v1_json").read_text())
    assert doc["meta"] == {"api-version": "1.1"}
    assert doc["name"] == name
    assert doc["versions"] == VERSIONS
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
    assert len(files_a) == 3 * 2 + 3 * 2 + 2
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
        tmp_path / "simple/demo-00001/index.v1_json",
        tmp_path / "simple/demo-00001/index.html",
        tmp_path / "simple/index.v1_json",
        tmp_path / "simple/index.html",
    ]
    replaces.clear()
    pypi.add_release(tmp_path, "demo-00001", "1.0.1")
    assert replaces[0].name == "demo_00001-1.0.1-py3-none-any.whl"
    assert [p.name for p in replaces[1:]] == ["index.v1_json", "index.html"]  # root unchanged


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


# ---------------------------------------------------------------- import_tree


def _fake_bandersnatch(root: Path) -> Path:
    web = root / "web"
    pkg = web / "packages/8f/1d/0123abcd/foo-1.0-py3-none-any.whl"
    pkg.parent.mkdir(parents=True)
    pkg.write_bytes(b"wheel bytes")
    digest = hashlib.sha256(b"wheel bytes").hexdigest()
    (web / "simple/foo").mkdir(parents=True)
    (web / "simple/foo/index.html").write_text(
        f'<a href="../../packages/8f/1d/0123abcd/{pkg.name}#sha256={digest}">{pkg.name}</a>\n'
    )
    (web / "simple/foo/index.v1_json").write_text("{}\n")
    (web / "simple/index.html").write_text('<a href="foo/">foo</a>\n')
    (web / "simple/index.v1_json").write_text("{}\n")
    (web / "json").mkdir()
    (web / "json/foo").write_text("{}")  # not part of the simple index: not imported
    return web


@pytest.mark.parametrize("bare", [False, True], ids=["bandersnatch-web", "bare"])
def test_import_tree_links_files(tmp_path: Path, replaces: list[Path], bare: bool) -> None:
    web = _fake_bandersnatch(tmp_path / "src")
    source = web if bare else tmp_path / "src"
    dest = tmp_path / "dest"
    assert pypi.import_tree(source, dest) == 5
    rel = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert rel == [
        "packages/8f/1d/0123abcd/foo-1.0-py3-none-any.whl",
        "simple/foo/index.html",
        "simple/foo/index.v1_json",
        "simple/index.html",
        "simple/index.v1_json",
    ]
    for r in rel:  # same filesystem: hard links, not copies
        assert os.path.samefile(web / r, dest / r)
    kinds = [
        p.relative_to(dest).parts[0] + ("/" if len(p.relative_to(dest).parts) > 2 else "")
        for p in replaces
    ]
    assert kinds == ["packages/", "simple/", "simple/", "simple", "simple"]  # content, pages, root
    assert pypi.project_index_pages(dest) == {"foo": dest / "simple/foo/index.html"}
    assert pypi.import_tree(source, dest) == 5  # again: nothing breaks, nothing duplicated


def test_import_tree_follows_symlinks_inside_source(tmp_path: Path) -> None:
    web = _fake_bandersnatch(tmp_path / "src")
    (web / "simple/alias").symlink_to("foo")
    (web / "packages/latest.whl").symlink_to("8f/1d/0123abcd/foo-1.0-py3-none-any.whl")
    dest = tmp_path / "dest"
    assert pypi.import_tree(tmp_path / "src", dest) == 8
    assert (dest / "simple/alias/index.html").is_file()
    assert not (dest / "packages/latest.whl").is_symlink()
    assert (dest / "packages/latest.whl").read_bytes() == b"wheel bytes"


@pytest.mark.parametrize("where", ["simple/evil", "packages/evil.whl", "simple/foo/evil"])
def test_import_tree_refuses_symlink_outside(tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    web = _fake_bandersnatch(tmp_path / "src")
    (web / where).symlink_to(outside / "secret")
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="outside the source") as excinfo:
        pypi.import_tree(tmp_path / "src", dest)
    assert where in str(excinfo.value)
    assert not dest.exists()  # checked before anything is written


def test_import_tree_refuses_symlinked_top_outside(tmp_path: Path) -> None:
    web = _fake_bandersnatch(tmp_path / "src")
    os.rename(web / "packages", tmp_path / "moved")
    (web / "packages").symlink_to(tmp_path / "moved")
    with pytest.raises(ValueError, match="outside the source"):
        pypi.import_tree(tmp_path / "src", tmp_path / "dest")


@pytest.mark.parametrize("name", ["..evil", "foo..whl", "a..b"])
def test_import_tree_refuses_dotdot_names(tmp_path: Path, name: str) -> None:
    web = _fake_bandersnatch(tmp_path / "src")
    (web / "packages" / name).write_text("x")
    with pytest.raises(ValueError, match=re.escape(name)):
        pypi.import_tree(tmp_path / "src", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_import_tree_needs_a_simple_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="simple"):
        pypi.import_tree(tmp_path, tmp_path / "dest")


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
