"""`origin import` (content/importer.py): bandersnatch's layouts and plain PEP 503 trees in,
every project in both page forms out, and anything else refused before a byte is written.

The bandersnatch trees here are written the way its source writes them (simple.py's
pages, the filesystem storage's set_upload_time as each file's mtime, core metadata
files beside the packages, the legacy JSON API under json/ and pypi/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from indextrees import Bandersnatch

from mirrorfleet.content import pages, pypi
from mirrorfleet.content.importer import ImportRefused, import_tree
from mirrorfleet.tree.keys import SecretsDir

CLI = str(Path(sys.executable).with_name("mirrorfleet"))


def sample(root: Path, simple_format: str = "ALL") -> Bandersnatch:
    bs = Bandersnatch(root, simple_format)
    bs.add("foo", "foo-1.0-py3-none-any.whl", b"wheel 1.0", metadata=b"Metadata-Version: 2.1\n")
    bs.add("foo", "foo-1.0.tar.gz", b"sdist 1.0", requires_python=None)
    bs.add("foo", "foo-0.9-py3-none-any.whl", b"wheel 0.9", yanked="broken")
    bs.add("bar-baz", "bar_baz-2.0-py3-none-any.whl", b"bar wheel", metadata=b"Name: bar-baz\n")
    bs.write()
    return bs


def files_in(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def json_page(dest: Path, project: str) -> dict:
    return pages.parse_json((dest / f"simple/{project}/index.v1_json").read_bytes(), project)


def html_page(dest: Path, project: str) -> dict:
    return pages.parse_html((dest / f"simple/{project}/index.html").read_bytes(), project)


# ---------------------------------------------------------------- what is accepted


@pytest.mark.parametrize("from_web", [False, True], ids=["mirror-dir", "web-dir"])
def test_bandersnatch_all_is_imported_as_it_is(tmp_path: Path, from_web: bool) -> None:
    bs = sample(tmp_path / "src")
    dest = tmp_path / "dest"
    written: list[Path] = []
    count = import_tree(bs.web if from_web else bs.web.parent, dest, written)
    imported = files_in(dest)
    assert count == len(imported) == 4 + 2 + 3 * 2 + 3  # files, .metadata, pages, root
    assert not [p for p in imported if p.startswith(("json/", "pypi/", "last-modified"))]
    for rel in imported:  # all upstream's, hard-linked: nothing was rewritten
        assert os.path.samefile(bs.web / rel, dest / rel), rel
    # content, then each project's pages (JSON first, HTML last), then the root pages
    rels = [p.relative_to(dest).as_posix() for p in written]
    assert all(r.startswith("packages/") for r in rels[:6])
    assert rels[6:] == [
        "simple/bar-baz/index.v1_json",
        "simple/bar-baz/index.v1_html",
        "simple/bar-baz/index.html",
        "simple/foo/index.v1_json",
        "simple/foo/index.v1_html",
        "simple/foo/index.html",
        "simple/index.v1_json",
        "simple/index.v1_html",
        "simple/index.html",
    ]
    again: list[Path] = []
    assert import_tree(bs.web.parent, dest, again) == count and again == []


def test_bandersnatch_html_only_gets_json_pages(tmp_path: Path) -> None:
    """simple-format = HTML: the JSON page is made from the HTML page and the files."""
    bs = sample(tmp_path / "src", "HTML")
    dest = tmp_path / "dest"
    written: list[Path] = []
    import_tree(bs.web.parent, dest, written)
    rels = [p.relative_to(dest).as_posix() for p in written]
    assert "simple/foo/index.v1_json" in rels and "simple/index.v1_json" in rels
    doc = json_page(dest, "foo")
    assert doc["meta"] == {"api-version": "1.1"}
    assert doc["versions"] == ["0.9", "1.0"]
    by_name = {f["filename"]: f for f in doc["files"]}
    upstream = {f["filename"]: f for f in bs.projects["foo"]}
    for name, entry in by_name.items():
        original = upstream[name]
        assert entry["url"] == original["url"] and entry["hashes"] == original["hashes"]
        assert entry["size"] == original["size"]  # from the file on disk
        assert entry["upload-time"] == "2020-09-13T12:26:40Z"  # its mtime: the upload time
        assert entry.get("requires-python") == original["requires-python"]
        assert entry.get("core-metadata") == original.get("core-metadata")
        assert entry.get("yanked", False) == original["yanked"]
    root = json.loads((dest / "simple/index.v1_json").read_text())
    assert root["projects"] == [{"name": "bar-baz"}, {"name": "foo"}]
    # upstream's HTML stays upstream's
    assert os.path.samefile(bs.web / "simple/foo/index.html", dest / "simple/foo/index.html")


def test_bandersnatch_json_only_gets_html_pages(tmp_path: Path) -> None:
    """simple-format = JSON: index.html (project and root) is made from the JSON."""
    bs = sample(tmp_path / "src", "JSON")
    dest = tmp_path / "dest"
    import_tree(bs.web.parent, dest)
    assert os.path.samefile(bs.web / "simple/foo/index.v1_json", dest / "simple/foo/index.v1_json")
    html = (dest / "simple/foo/index.html").read_text()
    assert 'data-yanked="broken"' in html
    wheel = next(f for f in bs.projects["foo"] if f["filename"] == "foo-1.0-py3-none-any.whl")
    meta = wheel["core-metadata"]["sha256"]
    assert f'data-core-metadata="sha256={meta}" data-dist-info-metadata="sha256={meta}"' in html
    assert {f["filename"] for f in html_page(dest, "foo")["files"]} == {
        f["filename"] for f in bs.projects["foo"]
    }
    assert pypi.project_index_pages(dest) == {
        "bar-baz": dest / "simple/bar-baz/index.html",
        "foo": dest / "simple/foo/index.html",
    }
    assert 'href="foo/"' in (dest / "simple/index.html").read_text()


def test_plain_pep503_tree(tmp_path: Path) -> None:
    """No web/, no JSON anywhere: a demo tree stripped of its JSON pages."""
    src = tmp_path / "plain"
    pypi.generate(src, 2, versions=2)
    for page in src.rglob("index.v1_json"):
        page.unlink()
    dest = tmp_path / "dest"
    import_tree(src, dest)
    for project in ("demo-00000", "demo-00001"):
        doc = json_page(dest, project)
        html_files = html_page(dest, project)["files"]
        assert [f["filename"] for f in doc["files"]] == [f["filename"] for f in html_files]
        for f in doc["files"]:
            assert f["size"] == (dest / "simple" / project / f["url"]).resolve().stat().st_size
    yanked = [f for f in json_page(dest, "demo-00000")["files"] if f.get("yanked")]
    assert [f["yanked"] for f in yanked] == [pypi.YANK_REASON]


def test_an_import_into_a_tree_with_projects_lists_them_all(tmp_path: Path) -> None:
    """The root pages we make list what the tree held before the import as well."""
    dest = tmp_path / "dest"
    pypi.generate(dest, 2, versions=1)
    before = {"demo-00000", "demo-00001"}
    src = tmp_path / "plain"
    pypi.generate(src, 1, versions=1, prefix="other")
    for page in (src / "simple").glob("index.*"):  # a source without root pages
        page.unlink()
    import_tree(src, dest)
    root = json.loads((dest / "simple/index.v1_json").read_bytes())
    assert {p["name"] for p in root["projects"]} == before | {"other-00000"}
    html = (dest / "simple/index.html").read_text()
    assert all(f'href="{name}/"' in html for name in before | {"other-00000"})


def test_upstream_json_is_never_replaced_by_ours(tmp_path: Path) -> None:
    bs = sample(tmp_path / "src", "HTML")
    dest = tmp_path / "dest"
    import_tree(bs.web.parent, dest)
    ours = (dest / "simple/foo/index.v1_json").read_bytes()
    (bs.web / "simple/foo/index.v1_json").write_text(bs.json("foo"))  # upstream adds JSON
    written: list[Path] = []
    import_tree(bs.web.parent, dest, written)
    assert dest / "simple/foo/index.v1_json" in written
    assert os.path.samefile(bs.web / "simple/foo/index.v1_json", dest / "simple/foo/index.v1_json")
    assert (dest / "simple/foo/index.v1_json").read_bytes() != ours


def test_symlinks_inside_the_source_are_followed(tmp_path: Path) -> None:
    """As some mirrors do: index.html a symlink to index.v1_html, a file linked twice."""
    bs = sample(tmp_path / "src")
    page = bs.web / "simple/foo/index.html"
    page.unlink()
    page.symlink_to("index.v1_html")
    wheel = bs.web / bs.projects["bar-baz"][0]["url"].removeprefix("../../")
    (bs.web / "packages/latest.whl").symlink_to(wheel)
    dest = tmp_path / "dest"
    import_tree(bs.web.parent, dest)
    assert not (dest / "simple/foo/index.html").is_symlink()
    assert (dest / "simple/foo/index.html").read_bytes() == (
        bs.web / "simple/foo/index.v1_html"
    ).read_bytes()
    assert not (dest / "packages/latest.whl").is_symlink()
    assert (dest / "packages/latest.whl").read_bytes() == b"bar wheel"


# ---------------------------------------------------------------- what is refused


def _break(bs: Bandersnatch, how: str) -> str:
    """Damage one thing; return what the error must name."""
    web, foo = bs.web, bs.web / "simple/foo"
    if how == "absolute-link":  # bandersnatch's root_uri
        html = bs.html("foo").replace('href="../../', 'href="https://files.example/')
        (foo / "index.html").write_text(html)
        return "only relative links"
    if how == "rooted-link":
        (foo / "index.html").write_text(bs.html("foo").replace('href="../../', 'href="/'))
        return "only relative links"
    if how == "outside-packages":
        (foo / "index.html").write_text(bs.html("foo").replace('href="../../', 'href="../../../'))
        return "outside packages/"
    if how == "missing-file":
        (web / bs.projects["foo"][1]["url"].removeprefix("../../")).unlink()
        return "which the source does not have"
    if how == "missing-metadata":
        wheel = web / bs.projects["foo"][0]["url"].removeprefix("../../")
        wheel.with_name(wheel.name + ".metadata").unlink()
        return "advertises core metadata"
    if how == "no-page":
        for page in foo.iterdir():
            page.unlink()
        (foo / "README").write_text("hi")
        return "simple/foo/README: not a project page"
    if how == "unparseable":
        (foo / "index.html").write_bytes(b"<a href='x'>\xff</a>")
        return "not UTF-8"
    if how == "nested-anchor":
        (foo / "index.v1_html").write_text("<a href='a.whl'><a href='b.whl'>b.whl</a></a>")
        return "inside another"
    if how == "unnormalized":
        os.rename(foo, web / "simple/Foo")
        return "not a normalized project name"
    if how == "hash-index":
        (web / "simple/f").mkdir()
        os.rename(foo, web / "simple/f/foo")
        return "hash-index"
    if how == "pages-disagree":
        bs.projects["foo"].pop()
        (foo / "index.v1_json").write_text(bs.json("foo"))
        return "list different files"
    if how == "wrong-size":
        doc = json.loads(bs.json("foo"))
        doc["files"][0]["size"] += 1
        (foo / "index.v1_json").write_text(json.dumps(doc))
        return "bytes, the file has"
    if how == "json-of-another-project":
        (foo / "index.v1_json").write_text(bs.json("bar-baz"))
        return "names project 'bar-baz'"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "absolute-link",
        "rooted-link",
        "outside-packages",
        "missing-file",
        "missing-metadata",
        "no-page",
        "unparseable",
        "nested-anchor",
        "unnormalized",
        "hash-index",
        "pages-disagree",
        "wrong-size",
        "json-of-another-project",
    ],
)
def test_refused_before_anything_is_written(tmp_path: Path, how: str) -> None:
    bs = sample(tmp_path / "src")
    message = _break(bs, how)
    dest = tmp_path / "dest"
    with pytest.raises(ImportRefused if how not in PAGE_ERRORS else pages.PageError) as excinfo:
        import_tree(bs.web.parent, dest)
    assert message in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
    assert not dest.exists()


PAGE_ERRORS = {"unparseable", "nested-anchor", "json-of-another-project"}


@pytest.mark.parametrize("where", ["simple/evil", "packages/evil.whl", "simple/foo/evil"])
def test_symlink_outside_is_refused(tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    bs = sample(tmp_path / "src")
    (bs.web / where).symlink_to(outside / "secret")
    dest = tmp_path / "dest"
    with pytest.raises(ImportRefused, match="outside the source") as excinfo:
        import_tree(bs.web.parent, dest)
    assert where in str(excinfo.value)
    assert not dest.exists()


def test_symlinked_top_outside_is_refused(tmp_path: Path) -> None:
    bs = sample(tmp_path / "src")
    os.rename(bs.web / "packages", tmp_path / "moved")
    (bs.web / "packages").symlink_to(tmp_path / "moved")
    with pytest.raises(ImportRefused, match="outside the source"):
        import_tree(bs.web.parent, tmp_path / "dest")


@pytest.mark.parametrize("name", ["..evil", "foo..whl", "a..b"])
def test_dotdot_names_are_refused(tmp_path: Path, name: str) -> None:
    bs = sample(tmp_path / "src")
    (bs.web / "packages" / name).write_text("x")
    with pytest.raises(ImportRefused, match=name.replace(".", r"\.")):
        import_tree(bs.web.parent, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_a_simple_dir_is_needed(tmp_path: Path) -> None:
    with pytest.raises(ImportRefused, match="simple"):
        import_tree(tmp_path, tmp_path / "dest")


def test_the_command_refuses_in_one_line(tmp_path: Path, secrets_dir: SecretsDir) -> None:
    bs = sample(tmp_path / "src")
    _break(bs, "missing-metadata")
    toml = tmp_path / "origin.toml"
    toml.write_text(
        f'name = "origin"\ntree = "{tmp_path / "tree"}"\n'
        f'signing_key = "{secrets_dir.signing_key}"\nping_secret = "{secrets_dir.ping_secret}"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
    )
    proc = subprocess.run(
        [CLI, "origin", "import", str(bs.web.parent), "--config", str(toml), "--list-changed"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert "advertises core metadata" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "tree" / "packages").exists()
