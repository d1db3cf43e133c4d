"""tests/indextrees.py, the builder of the source trees the fleet lab imports with real
wheels (test_fleet): each layout is one `origin import` takes as it is, the plain one
without `.metadata` or JSON pages, the bandersnatch one with `.metadata` beside every
wheel, advertised in the pages the import keeps."""

from __future__ import annotations

import json
from pathlib import Path

import indextrees
import pytest

from mirrorfleet.content import pages, pypi
from mirrorfleet.content.importer import import_tree


@pytest.fixture
def dists(tmp_path: Path) -> list[Path]:
    made = tmp_path / "made"
    return [
        pypi.make_wheel(made, "foo-bar", "1.0"),
        pypi.make_wheel(made, "foo-bar", "1.1"),
        pypi.make_sdist(made, "sdist-only", "2.0"),
    ]


def source_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def json_page(tree: Path, project: str) -> dict:
    return pages.parse_json((tree / f"simple/{project}/index.v1_json").read_bytes(), project)


def test_plain_tree_has_html_pages_only_and_imports_into_both_forms(
    tmp_path: Path, dists: list[Path]
) -> None:
    source = indextrees.plain(dists, tmp_path / "plain")
    assert source_files(source) == [
        "packages/foo-bar/foo_bar-1.0-py3-none-any.whl",
        "packages/foo-bar/foo_bar-1.1-py3-none-any.whl",
        "packages/sdist-only/sdist_only-2.0.tar.gz",
        "simple/foo-bar/index.html",
        "simple/index.html",
        "simple/sdist-only/index.html",
    ]
    tree = tmp_path / "tree"
    import_tree(source, tree)
    doc = json_page(tree, "foo-bar")
    assert [f["filename"] for f in doc["files"]] == [p.name for p in dists[:2]]
    assert not [f for f in doc["files"] if pages.metadata_advertised(f)]
    assert {f["requires-python"] for f in doc["files"]} == {pypi.REQUIRES_PYTHON}


def test_bandersnatch_tree_has_each_wheels_metadata_and_advertises_it(
    tmp_path: Path, dists: list[Path]
) -> None:
    source = indextrees.bandersnatch(dists, tmp_path / "bs")
    web = source / "web"
    for project in ("foo-bar", "sdist-only"):
        for page in ("index.html", "index.v1_html", "index.v1_json"):
            assert (web / "simple" / project / page).is_file()
    tree = tmp_path / "tree"
    import_tree(source, tree)
    for project, wheels in (("foo-bar", dists[:2]), ("sdist-only", [])):
        doc = json_page(tree, project)
        advertised = {f["filename"] for f in doc["files"] if pages.metadata_advertised(f)}
        assert advertised == {p.name for p in wheels}
    for entry in json_page(tree, "foo-bar")["files"]:
        served = tree / "simple/foo-bar" / (entry["url"] + pypi.METADATA_SUFFIX)
        assert served.read_bytes() == indextrees.wheel_metadata(
            next(p for p in dists if p.name == entry["filename"])
        )
    assert json.loads((web / "simple/sdist-only/index.v1_json").read_text())["versions"] == ["2.0"]
