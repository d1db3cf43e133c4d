"""`origin publish --changed FILE`: the list a writer hands over, read and checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mirrorfleet.errors import UserError
from mirrorfleet.origin.changelist import ChangeList, read_change_list

SHA = "4" * 64


def touch(tree: Path, rel: str, data: bytes = b"x") -> Path:
    path = tree / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_names_are_normalised_and_blank_lines_skipped(tmp_path: Path) -> None:
    got = read_change_list(["Foo.Bar\n", "\n", "  baz__Qux  \r\n", "", "zope.interface"], tmp_path)
    assert got.projects == {"foo-bar", "baz-qux", "zope-interface"}
    assert got.paths == set()


def test_relative_paths(tmp_path: Path) -> None:
    touch(tmp_path, "packages/foo/foo-1.0.whl")
    touch(tmp_path, "simple/index.html")
    lines = [
        "simple/foo/index.html",
        "simple/bar/",  # a project's folder
        "simple/gone/index.v1_json",  # a project page that is not there: still its project
        "packages/foo/foo-1.0.whl",
        "./packages//foo/old-0.9.whl",  # gone: kept, normalised (it was removed)
        "simple/index.html",
        "simple/index.v1_json",  # a root page, whether or not it is there
    ]
    got = read_change_list(lines, tmp_path)
    assert got.projects == {"foo", "bar", "gone"}
    assert got.paths == {
        "packages/foo/foo-1.0.whl",
        "packages/foo/old-0.9.whl",
        "simple/index.html",
        "simple/index.v1_json",
    }


def test_absolute_paths_inside_the_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    touch(tree, "packages/a/a-1.whl")
    alias = tmp_path / "alias"
    alias.symlink_to(tree)  # the tree as reached through a symlink, and as it really is
    lines = [f"{tree}/packages/a/a-1.whl", f"{tree}/simple/a/index.html", f"{alias}/simple/b/"]
    got = read_change_list(lines, alias)
    assert got == ChangeList(projects={"a", "b"}, paths={"packages/a/a-1.whl"})


def test_a_bandersnatch_diff_file_reads_as_it_is(tmp_path: Path) -> None:
    """bandersnatch's `diff-file`: the absolute paths it wrote under its web/."""
    web = tmp_path / "mirror" / "web"
    wheel = f"packages/8b/42/{'ab' * 30}/foo-1.0-py3-none-any.whl"
    written = [
        wheel,
        "simple/foo/index.html",
        "simple/foo/index.v1_html",
        "simple/foo/index.v1_json",
        "json/foo",
        "simple/index.html",
        "simple/index.v1_html",
        "simple/index.v1_json",
    ]
    for rel in written:
        touch(web, rel)
    (web / "pypi/foo").mkdir(parents=True)
    (web / "pypi/foo/json").symlink_to("../../json/foo")  # as bandersnatch links it
    diff_file = "".join(f"{web}/{rel}\n" for rel in [*written, "pypi/foo/json"])
    got = read_change_list(diff_file.splitlines(keepends=True), web, source="diff")
    assert got.projects == {"foo"}
    assert got.paths == {
        wheel,
        "json/foo",
        "pypi/foo/json",
        "simple/index.html",
        "simple/index.v1_html",
        "simple/index.v1_json",
    }


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("/etc/passwd", "outside the tree"),
        ("packages/../../secret", "'..'"),
        ("{tree}/../secret", "'..'"),
        (".mirror/stamp.json", "publish writes .mirror/ itself"),
        ("{tree}/.mirror/journal.json", "publish writes .mirror/ itself"),
        ("packages/foo", "not a regular file"),
        ("bad name!", "not a project name"),
        ("-dash", "not a project name"),
        ("packages/a\\b", "NUL or backslash"),
        ("packages/escape", "outside the tree"),
        ("{tree}/", "names the tree itself"),
        ("simple/.hidden/index.html", "not a project's folder"),
    ],
)
def test_a_bad_line_is_an_error_naming_its_line(tmp_path: Path, line: str, problem: str) -> None:
    tree = tmp_path / "tree"
    touch(tree, "packages/foo/foo-1.0.whl")
    touch(tmp_path, "secret")
    (tree / "packages/escape").symlink_to(tmp_path / "secret")
    text = line.format(tree=tree)
    lines = ["foo", "", "packages/foo/foo-1.0.whl", text, "bar"]
    with pytest.raises(UserError, match=rf"^list\.txt:4: .*{problem}") as caught:
        read_change_list(lines, tree, source="list.txt")
    assert repr(text) in str(caught.value)


def test_a_line_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"<stdin>:2: not UTF-8"):
        read_change_list(["foo", "packages/\udcff.whl"], tmp_path)


def test_a_symlink_inside_the_tree_is_a_file_like_any_other(tmp_path: Path) -> None:
    touch(tmp_path, "packages/a/real.whl")
    os.symlink("real.whl", tmp_path / "packages/a/alias.whl")
    assert read_change_list(["packages/a/alias.whl"], tmp_path).paths == {"packages/a/alias.whl"}
