"""What the tree held at the last publish, kept by the origin outside the tree.

One SQLite file (`<state_dir>/publish.sqlite`): per project the stat and sha256 of its
`index.html`, the sha256 of each file of `simple/<p>/` and the content files its page
links; the same for simple/'s own pages. A publish compares the tree with it to
find what changed (stat first, hashing only what moved), so a small change costs
the same in a small tree and a big one.

A publish holds one write transaction from start to end and commits it only after
the stamp is written: a publish that dies leaves the state as it was, and the next
one finds the same change again. The transaction also keeps two publishes apart.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mirrorfleet.errors import UserError

STATE_FILE = "publish.sqlite"
SCHEMA = 1
LOCK_TIMEOUT = 10.0  # seconds to wait for another publish before giving up

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS projects (
    project TEXT PRIMARY KEY,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ino INTEGER NOT NULL,
    sha256 TEXT NOT NULL,   -- of simple/<p>/index.html
    pages TEXT NOT NULL,    -- JSON {file name in simple/<p>/: [size, sha256]}
    links TEXT NOT NULL     -- tree-relative content paths the page links, one a line
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, ino INTEGER NOT NULL,
    sha256 TEXT NOT NULL
) WITHOUT ROWID;
"""

Stat = tuple[int, int, int]  # size, mtime_ns, inode: what tells a rewritten file


def stat_key(st: os.stat_result) -> Stat:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


@dataclass
class ProjectRow:
    project: str
    stat: Stat
    sha256: str
    pages: dict[str, tuple[int, str]] = field(default_factory=dict)
    links: frozenset[str] = frozenset()


@dataclass
class FileRow:
    path: str
    stat: Stat
    sha256: str


class PublishState:
    """The state file, inside one transaction until commit() or close()."""

    def __init__(self, db: sqlite3.Connection, path: Path | None) -> None:
        self.db, self.path = db, path

    @classmethod
    def open(cls, state_dir: Path, dry_run: bool = False) -> PublishState:
        """Open (creating) the state and take the write lock; a dry run writes nothing
        and works on an empty state when there is none yet."""
        path = state_dir / STATE_FILE
        if dry_run and not path.exists():
            return cls._begin(sqlite3.connect(":memory:", isolation_level=None), None, False)
        if not dry_run:
            try:
                state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
            except OSError as exc:
                raise UserError(f"cannot make the state folder {state_dir}: {exc}") from None
        try:
            db = sqlite3.connect(path, timeout=LOCK_TIMEOUT, isolation_level=None)
            return cls._begin(db, path, not dry_run)
        except sqlite3.DatabaseError as exc:
            if "locked" in str(exc):
                raise UserError(
                    f"another publish holds {path} (waited {LOCK_TIMEOUT:.0f} s)"
                ) from None
            raise UserError(
                f"cannot use the publish state {path}: {exc}; move it aside "
                "(the next publish then hashes every page again)"
            ) from None

    @classmethod
    def _begin(cls, db: sqlite3.Connection, path: Path | None, write: bool) -> PublishState:
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        for statement in _TABLES.split(";"):
            if statement.strip():
                db.execute(statement)
        return cls(db, path)

    # -- meta: which tree, which serial -------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, **values: object) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [(k, json.dumps(v)) for k, v in values.items()],
        )

    def invalid_for(self, tree: Path, serial: int) -> str | None:
        """Why this state cannot describe `tree` at stamp `serial`; None when it can.

        It may be behind the stamp (a publish that died after its stamp, before its
        commit: the change is found again), never ahead of it."""
        if self.meta("schema") is None:
            return "no publish state yet"
        if json.loads(self.meta("schema") or "0") != SCHEMA:
            return "the publish state is of another version"
        if json.loads(self.meta("tree") or '""') != str(tree.resolve()):
            return "the publish state describes another tree"
        state_serial = json.loads(self.meta("serial") or "-1")
        if state_serial > serial:
            return f"the publish state is at serial {state_serial}, the tree at {serial}"
        return None

    def shards(self) -> set[str]:
        return set(json.loads(self.meta("shards") or "[]"))

    def clear(self) -> None:
        for table in ("meta", "projects", "files"):
            self.db.execute(f"DELETE FROM {table}")

    # -- projects ---------------------------------------------------------------------

    def project(self, name: str) -> ProjectRow | None:
        row = self.db.execute(
            "SELECT project, size, mtime_ns, ino, sha256, pages, links FROM projects "
            "WHERE project = ?",
            (name,),
        ).fetchone()
        return None if row is None else _project_row(row)

    def project_stats(self) -> Iterator[tuple[str, Stat]]:
        """Every project with its page's stat, in the order of its name (UTF-8 bytes,
        which is the order of Python's str)."""
        cursor = self.db.execute(
            "SELECT project, size, mtime_ns, ino FROM projects ORDER BY project"
        )
        for project, size, mtime_ns, ino in cursor:
            yield project, (size, mtime_ns, ino)

    def put_projects(self, rows: Iterable[ProjectRow]) -> None:
        self.db.executemany(
            "INSERT OR REPLACE INTO projects (project, size, mtime_ns, ino, sha256, pages, links)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    r.project,
                    *r.stat,
                    r.sha256,
                    json.dumps({k: list(v) for k, v in sorted(r.pages.items())}),
                    "\n".join(sorted(r.links)),
                )
                for r in rows
            ),
        )

    def drop_projects(self, names: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM projects WHERE project = ?", ((n,) for n in names))

    def count_projects(self) -> int:
        return self.db.execute("SELECT count(*) FROM projects").fetchone()[0]

    # -- other files (simple/'s own pages) ----------------------------------------------

    def file(self, path: str) -> FileRow | None:
        row = self.db.execute(
            "SELECT path, size, mtime_ns, ino, sha256 FROM files WHERE path = ?", (path,)
        ).fetchone()
        return None if row is None else FileRow(row[0], (row[1], row[2], row[3]), row[4])

    def put_file(self, row: FileRow) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO files (path, size, mtime_ns, ino, sha256)"
            " VALUES (?, ?, ?, ?, ?)",
            (row.path, *row.stat, row.sha256),
        )

    def drop_file(self, path: str) -> None:
        self.db.execute("DELETE FROM files WHERE path = ?", (path,))

    # -- the end ----------------------------------------------------------------------

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def close(self) -> None:
        """Roll back whatever was not committed, and let go of the file."""
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")
        self.db.close()


def _project_row(row: tuple) -> ProjectRow:
    project, size, mtime_ns, ino, sha256, pages, links = row
    return ProjectRow(
        project,
        (size, mtime_ns, ino),
        sha256,
        {name: (int(s), str(h)) for name, (s, h) in json.loads(pages).items()},
        frozenset(links.split("\n")) if links else frozenset(),
    )
