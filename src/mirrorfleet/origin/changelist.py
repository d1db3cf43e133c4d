"""`origin publish --changed FILE`: what a writer says it wrote, checked before use.

One entry a line. A line without "/" is a project name; anything else is a path,
relative to the tree or absolute inside it, so bandersnatch's `diff-file` (the
absolute paths of what it wrote under its `web/`) is read as it is when the tree is
that `web/`. A path under `simple/<project>/` stands for its project; any other
(content, the root pages, other files) is taken as it is. Every line is checked
before anything is written: a bad one is an error naming its line.
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mirrorfleet.content.pypi import normalize
from mirrorfleet.errors import UserError
from mirrorfleet.tree.changes import check_path
from mirrorfleet.tree.files import META_DIR
from mirrorfleet.tree.signed import BadSignature

SIMPLE = "simple"
# simple/'s own pages, which list every project (bandersnatch also writes index.v1_html)
ROOT_PAGES = ("simple/index.html", "simple/index.v1_json", "simple/index.v1_html")
_NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")


@dataclass
class ChangeList:
    projects: set[str] = field(default_factory=set)  # names, as simple/ spells them
    paths: set[str] = field(default_factory=set)  # tree-relative, normalised, not simple/<p>/

    def __len__(self) -> int:
        return len(self.projects) + len(self.paths)

    def update(self, other: ChangeList) -> None:
        self.projects |= other.projects
        self.paths |= other.paths


def read_change_list(lines: Iterable[str], tree: Path, source: str = "<stdin>") -> ChangeList:
    """The entries of `lines`, checked against the tree; UserError naming the first bad
    line (`source:line: problem`)."""
    parser = _Parser(tree)
    for number, line in enumerate(lines, 1):
        text = line.rstrip("\r\n").strip()
        if not text:
            continue
        try:
            parser.add(text)
        except ValueError as exc:
            raise UserError(f"{source}:{number}: {exc}: {text!r}") from None
    return parser.result


class _Parser:
    def __init__(self, tree: Path) -> None:
        self.tree = tree
        self.bases = sorted({os.path.abspath(tree), os.path.realpath(tree)}, key=len, reverse=True)
        self.real = os.path.realpath(tree)
        self.result = ChangeList()

    def add(self, text: str) -> None:
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ValueError("not UTF-8") from None
        if "/" not in text:
            if not _NAME_RE.fullmatch(text):
                raise ValueError("not a project name (and not a path: it has no '/')")
            self.result.projects.add(normalize(text))
            return
        rel = self.relative(text)
        parts = rel.split("/")
        if parts[0] == SIMPLE and len(parts) >= 2 and not self.root_file(rel, parts):
            if parts[1].startswith("."):
                raise ValueError("not a project's folder")
            self.result.projects.add(parts[1])
            return
        self.check_file(rel)
        self.result.paths.add(rel)

    def relative(self, text: str) -> str:
        if "\0" in text or "\\" in text:
            raise ValueError("a path may not hold NUL or backslash")
        if ".." in text.split("/"):
            raise ValueError("a path may not hold '..'")
        if text.startswith("/"):
            path = posixpath.normpath(text)
            for base in self.bases:
                if path == base:
                    rel = "."
                    break
                if path.startswith(base.rstrip("/") + "/"):
                    rel = path[len(base.rstrip("/")) + 1 :]
                    break
            else:
                raise ValueError(f"outside the tree {self.tree}")
        else:
            rel = posixpath.normpath(text)
        if rel in ("", "."):
            raise ValueError("names the tree itself")
        if rel.split("/")[0] == META_DIR:
            raise ValueError(f"publish writes {META_DIR}/ itself; do not list it")
        try:
            return check_path(rel)
        except BadSignature as exc:
            raise ValueError(str(exc)) from None

    def root_file(self, rel: str, parts: list[str]) -> bool:
        """simple/<name>: one of simple/'s own pages (or another file) vs a project."""
        return len(parts) == 2 and (rel in ROOT_PAGES or (self.tree / rel).is_file())

    def check_file(self, rel: str) -> None:
        """A listed file is a regular file inside the tree, or gone (then: removed)."""
        path = self.tree / rel
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return
        if not stat.S_ISREG(st.st_mode):
            raise ValueError("not a regular file (list the files, not their folder)")
        real = os.path.realpath(path)
        if not real.startswith(self.real.rstrip("/") + "/"):
            raise ValueError(f"resolves to {real}, outside the tree")
