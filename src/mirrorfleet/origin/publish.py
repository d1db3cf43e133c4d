"""`mirrorfleet origin publish`: turn whatever landed in the tree into a new serial, and
write the change record naming every file that serial wrote or removed.

What changed is found one of three ways (the *mode*):

- `changed-list`: the writer says what it wrote (`--changed FILE`: project names and
  paths, bandersnatch's diff-file as it is). Nothing else is read: no walk of
  `simple/`, only the manifest shards the change touches.
- `stat`: every `simple/<p>/index.html` is stat'ed and compared, in name order, with
  the publish state (origin/state.py); only pages whose stat moved are hashed.
- `full`: every page is hashed and compared with the signed manifest, and the state
  is built again. The record says `complete = False` (mirrors sync everything). It is
  what `--full` asks for, and what a tree with no usable state gets (the first
  publish, or a tree an older version published).

For each changed project the files of `simple/<p>/` are hashed and compared with the
state, and its page's links with the links it had: new links to files on disk are
written content, old links to files gone are removed content. simple/'s own pages
are stat'ed every time.

Order matters: manifest shards, trace, the record, the snapshot (every shard by
hash), then the stamp (naming the snapshot and the record by hash), each file
atomic; the state is committed after the stamp. A mirror that copies the tree
mid-publish gets an older stamp, never a stamp ahead of the content it describes,
and a publish that dies before its commit is done again by the next one (at the same
serial if the stamp was not written yet; the paths it was told are kept in
`<state_dir>/pending.json` until then).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import unquote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.config import PRESETS, OriginConfig
from mirrorfleet.content import pages
from mirrorfleet.errors import UserError
from mirrorfleet.origin.changelist import ROOT_PAGES, SIMPLE, ChangeList, read_change_list
from mirrorfleet.origin.state import SCHEMA, FileRow, ProjectRow, PublishState, Stat, stat_key
from mirrorfleet.tree import manifest
from mirrorfleet.tree.changes import CHANGES_DIR, ChangeRecord, Written, changes_path, check_path
from mirrorfleet.tree.files import META_DIR, atomic_write
from mirrorfleet.tree.keys import load_signing_key, read_secret
from mirrorfleet.tree.seal import origin_keys, publish_keys, seal
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.snapshot import Snapshot, read_local_snapshot, snapshot_of_tree
from mirrorfleet.tree.stamp import Stamp, read_local_stamp

CHANGED_LIST, STAT, FULL = "changed-list", "stat", "full"
MAX_RECORD_PATHS = 200_000  # twice an agent's max_delta_paths; well inside MAX_RECORD
PAGE = "index.html"
PENDING = "pending.json"
PROGRESS_EVERY = 50_000  # projects between progress lines of a full re-hash

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")

# The change journal (one signed list of every serial's projects) that publishes wrote
# before the change records replaced it.
RETIRED = (f"{META_DIR}/journal.json",)


@dataclass
class PublishResult:
    serial: int
    previous: int
    changed: list[str] = field(default_factory=list)  # projects changed
    removed: list[str] = field(default_factory=list)  # projects removed
    pings: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    mode: str = ""  # changed-list, stat or full
    written: int = 0  # paths the record names as written
    removed_paths: int = 0  # paths the record names as removed
    complete: bool = True  # False: the record says "sync everything"
    dry_run: bool = False  # nothing was written: serial is the one it would have been
    warnings: list[str] = field(default_factory=list)

    @property
    def published(self) -> bool:
        return self.serial != self.previous and not self.dry_run


def page_links(page: bytes, project: str, content: Iterable[str]) -> frozenset[str]:
    """The tree-relative content paths a project page's anchors link (`href=
    "../../packages/..."`, resolved from `simple/<project>/`), with `<file>.metadata`
    where an anchor advertises it (PEP 658/714). Absolute URLs, anything outside the
    content folders or the tree, and what a record may not name are left out.
    PageError when the page cannot be read at all."""
    tops = tuple(content)
    base = f"{SIMPLE}/{project}"
    found = set()
    for raw, metadata in pages.anchor_hrefs(page, f"{base}/{PAGE}"):
        href = raw.split("#", 1)[0].split("?", 1)[0]
        if not href or href.startswith("/") or _SCHEME_RE.match(href):
            continue
        path = posixpath.normpath(posixpath.join(base, unquote(href)))
        if path.split("/", 1)[0] not in tops:
            continue  # also "..": outside the tree
        # a client fetches an advertised .metadata: it is content too
        for item in (path, path + ".metadata") if metadata else (path,):
            try:
                found.add(check_path(item))
            except BadSignature:
                continue
    return frozenset(found)


class _Change:
    """What one publish found: the projects, the paths written and removed, and the
    state rows to keep. Reads the tree and the state; writes neither."""

    def __init__(self, tree: Path, content: tuple[str, ...], state: PublishState) -> None:
        self.tree, self.content, self.state = tree, content, state
        self.real = os.path.realpath(tree)
        self.pages: dict[str, str] = {}  # changed project -> sha256 of its index.html
        self.gone: set[str] = set()  # removed projects
        self.written: dict[str, Written] = {}
        self.removed: set[str] = set()
        self.rows: list[ProjectRow] = []  # state rows to write
        self.drops: list[str] = []  # state rows to delete
        self.warnings: list[str] = []
        self.unread = False  # a page whose links could not be read: the record says all

    @property
    def empty(self) -> bool:
        return not (self.pages or self.gone or self.written or self.removed)

    def write(self, item: Written) -> None:
        self.written[item.path] = item
        self.removed.discard(item.path)

    def remove(self, path: str) -> None:
        if path not in self.written:
            self.removed.add(path)

    # -- projects ---------------------------------------------------------------------

    def project(self, name: str) -> None:
        """Compare simple/<name>/ with the state's row; record what differs."""
        if not name or name.startswith(".") or "/" in name:
            return
        row = self.state.project(name)
        directory = self.tree / SIMPLE / name
        files, page = self._read_pages(directory)
        if page is None:
            if row is None:
                return  # never published, not (or not yet) a project
            self.gone.add(name)
            self.drops.append(name)
            self._diff_pages(name, row.pages, files)
            self._diff_links(row.links, frozenset())
            return
        st, data = page
        sha = files[PAGE][1]
        differs = self._diff_pages(name, row.pages if row else {}, files)
        if row is not None and row.sha256 == sha:
            links = row.links
        else:
            links = self.links(data, name)
            self._diff_links(row.links if row else frozenset(), links)
        if differs or row is None:
            self.pages[name] = sha
        self.rows.append(ProjectRow(name, stat_key(st), sha, files, links))

    def links(self, data: bytes, name: str) -> frozenset[str]:
        """page_links; for a page that cannot be read, none, a warning, and a record
        that says "sync everything" (it cannot name the files the page links)."""
        try:
            return page_links(data, name, self.content)
        except pages.PageError as exc:
            self.warnings.append(f"{exc}: its links are unknown, mirrors will walk the tree")
            self.unread = True
            return frozenset()

    def _read_pages(
        self, directory: Path
    ) -> tuple[dict[str, tuple[int, str]], tuple[os.stat_result, bytes] | None]:
        """The files of simple/<p>/ (name -> size, sha256), and index.html's stat and
        bytes when it is there."""
        files: dict[str, tuple[int, str]] = {}
        page = None
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return files, None
        if os.path.islink(directory):
            self._inside(directory / PAGE)
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if entry.is_symlink():
                self._inside(Path(entry.path))
            try:
                st, data = _read(Path(entry.path))
            except FileNotFoundError:
                continue  # went while we looked: as if it was never there
            files[entry.name] = (len(data), hashlib.sha256(data).hexdigest())
            if entry.name == PAGE:
                page = (st, data)
        return files, page

    def _diff_pages(
        self, name: str, old: dict[str, tuple[int, str]], new: dict[str, tuple[int, str]]
    ) -> bool:
        differs = False
        for filename, (size, sha) in new.items():
            if tuple(old.get(filename, ())) != (size, sha):
                self.write(Written(f"{SIMPLE}/{name}/{filename}", size, sha))
                differs = True
        for filename in old.keys() - new.keys():
            self.remove(f"{SIMPLE}/{name}/{filename}")
            differs = True
        return differs

    def _diff_links(self, old: frozenset[str], new: frozenset[str]) -> None:
        for path in sorted(new - old):
            if not self.content_file(path):
                self.warnings.append(f"a page links {path}, which is not in the tree")
        for path in sorted(old - new):
            if not (self.tree / path).exists():
                self.remove(path)

    # -- paths ------------------------------------------------------------------------

    def path(self, rel: str) -> None:
        """A path the writer listed: content as written (or removed when gone), any
        other file hashed."""
        if rel in ROOT_PAGES:
            self.root_page(rel, force=True)
        elif rel.split("/", 1)[0] in self.content:
            if not self.content_file(rel):
                self.remove(rel)
        else:
            try:
                st, data = _read(self.tree / rel)
            except (FileNotFoundError, NotADirectoryError):
                self.remove(rel)
                return
            if stat.S_ISREG(st.st_mode):
                self.write(Written(rel, len(data), hashlib.sha256(data).hexdigest()))

    def content_file(self, rel: str) -> bool:
        """Record a content file that is there as written; False when it is not."""
        try:
            st = os.stat(self.tree / rel)
        except (FileNotFoundError, NotADirectoryError):
            return False
        if not stat.S_ISREG(st.st_mode):
            return False
        self.write(Written(rel, st.st_size, ""))
        return True

    def root_page(self, rel: str, force: bool = False) -> None:
        """simple/'s own pages: two stats a publish, hashed only when the stat moved."""
        row = self.state.file(rel)
        path = self.tree / rel
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            if row is not None:
                self.remove(rel)
                self.state.drop_file(rel)
            return
        if row is not None and row.stat == stat_key(st) and not force:
            return
        if os.path.islink(path):
            self._inside(path)
        st, data = _read(path)
        sha = hashlib.sha256(data).hexdigest()
        if force or row is None or row.sha256 != sha:
            self.write(Written(rel, len(data), sha))
        self.state.put_file(FileRow(rel, stat_key(st), sha))

    def _inside(self, path: Path) -> None:
        real = os.path.realpath(path)
        if not real.startswith(self.real.rstrip("/") + "/"):
            raise UserError(
                f"refusing to publish: {path.relative_to(self.tree)} resolves to {real}, "
                f"outside the tree {self.real}; replace the symlink with the file"
            )

    # -- finding the candidates -------------------------------------------------------

    def stat_candidates(self, progress: Callable[[str], None]) -> list[str]:
        """Projects whose index.html's stat is not the state's, or that are only on one
        side: simple/ walked in name order, merged with the state's rows in name order."""
        names = project_dirs(self.tree)
        progress(f"checking {len(names)} project pages in {self.tree / SIMPLE} for changes")
        rows = self.state.project_stats()
        row = next(rows, None)
        candidates = []
        # relative to an open simple/, as plain strings: a Path per project cost 5x the stat
        simple = os.open(self.tree / SIMPLE, os.O_RDONLY | os.O_DIRECTORY) if names else None
        try:
            for name in names:
                while row is not None and row[0] < name:
                    candidates.append(row[0])  # in the state, gone from simple/
                    row = next(rows, None)
                try:
                    st: Stat | None = stat_key(os.stat(f"{name}/{PAGE}", dir_fd=simple))
                except (FileNotFoundError, NotADirectoryError):
                    st = None
                if row is not None and row[0] == name:
                    if st != row[1]:
                        candidates.append(name)
                    row = next(rows, None)
                elif st is not None:
                    candidates.append(name)  # new
        finally:
            if simple is not None:
                os.close(simple)
        while row is not None:
            candidates.append(row[0])
            row = next(rows, None)
        return candidates


def project_dirs(tree: Path) -> list[str]:
    """The folders of simple/, sorted; names that cannot be stored (not UTF-8) are not
    projects."""
    try:
        with os.scandir(tree / SIMPLE) as it:
            names = [e.name for e in it if not e.name.startswith(".") and e.is_dir()]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if _utf8(n))


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:
        return False
    return True


def _read(path: Path) -> tuple[os.stat_result, bytes]:
    """A file's bytes and the stat of the very file read."""
    with open(path, "rb") as f:
        return os.fstat(f.fileno()), f.read()


# -- full: every page hashed -----------------------------------------------------------


def _full_rows(
    change: _Change, names: list[str], hashes: dict[str, str], progress: Callable[[str], None]
) -> Iterator[ProjectRow]:
    """A state row for every project, hashes filled in as they are made."""
    for done, name in enumerate(names, 1):
        files, page = change._read_pages(change.tree / SIMPLE / name)
        if done % PROGRESS_EVERY == 0:
            progress(f"re-hashed {done}/{len(names)} project pages")
        if page is None:
            continue
        st, data = page
        sha = files[PAGE][1]
        hashes[name] = sha
        yield ProjectRow(name, stat_key(st), sha, files, change.links(data, name))


# -- publish ---------------------------------------------------------------------------


@dataclass
class _Docs:
    """Everything a publish writes into the tree, made before any of it is written."""

    shards: dict[str, bytes]
    trace: bytes
    record: ChangeRecord
    record_bytes: bytes
    snapshot: Snapshot


def publish(
    config: OriginConfig,
    force: bool = False,
    ping: bool = True,
    progress: Callable[[str], None] = lambda _msg: None,
    changed: ChangeList | None = None,
    full: bool = False,
    dry_run: bool = False,
) -> PublishResult:
    """Publish what changed in config.tree as the next serial.

    changed: what the writer says it wrote (`--changed`); None: find it by stat.
    full: hash every page (an audit) and rebuild the state; always a new serial, whose
    record is incomplete (mirrors sync everything).
    dry_run: find and report what would be recorded; write nothing.
    """
    started = time.monotonic()
    tree = config.tree
    if not tree.is_dir():
        raise UserError(f"tree {tree} does not exist")
    key = load_signing_key(config.signing_key)
    keys = origin_keys(key, config.keys_document)
    # the state's lock first: a publish that waited for another reads the stamp that
    # one wrote, never the one before it (two publishes, one serial)
    state = PublishState.open(config.state_dir, dry_run=dry_run)
    try:
        try:
            current = read_local_stamp(tree, keys)
        except BadSignature as exc:
            raise _rotated(exc) from None
        return _publish(
            config, key, keys, state, current,
            force, ping, progress, changed, full, dry_run, started,
        )  # fmt: skip
    finally:
        state.close()


def _publish(
    config: OriginConfig,
    key: Ed25519PrivateKey,
    keys: list[Ed25519PublicKey],
    state: PublishState,
    current: Stamp | None,
    force: bool,
    ping: bool,
    progress: Callable[[str], None],
    listed: ChangeList | None,
    full: bool,
    dry_run: bool,
    started: float,
) -> PublishResult:
    tree = config.tree
    previous, stamped = (current.serial, True) if current else (0, False)
    serial = previous + 1
    content = PRESETS[config.preset]
    change = _Change(tree, content, state)
    reason = state.invalid_for(tree, previous)
    mode = FULL if full or reason else (CHANGED_LIST if listed is not None else STAT)
    if mode != FULL and config.preset != "pypi" and listed is None:
        mode, reason = FULL, f"preset {config.preset} has no project pages to compare"
    result = PublishResult(serial=previous, previous=previous, mode=mode, dry_run=dry_run)
    pending = _pending_path(config)
    if (tree / SIMPLE).is_symlink():
        change._inside(tree / SIMPLE)
    try:
        if mode == FULL:
            why = f" ({reason})" if reason else ""
            progress(f"re-hashing every project page in {tree}{why}")
            update, new = _find_full(change, keys, serial, config.preset, progress)
        else:
            _find_changes(change, listed, _pending(pending, state, tree), progress)
    except BadSignature as exc:
        raise _rotated(exc) from None
    for rel in ROOT_PAGES:
        change.root_page(rel)
    result.warnings = change.warnings
    for warning in change.warnings:
        progress(f"warning: {warning}")
    if mode == FULL:
        nothing = update.empty
    else:
        update = manifest.ManifestUpdate(serial, sorted(change.pages), sorted(change.gone))
        nothing = change.empty
    if nothing and stamped and not (force or full):
        if not dry_run:
            known = _shards_on_disk(tree) if mode == FULL else state.shards()
            _keep_state(state, change, tree, previous, known, pending)
        result.seconds = time.monotonic() - started
        return result
    progress(f"serial {serial}: {len(update.changed)} changed, {len(update.removed)} removed")
    try:
        if mode == FULL:  # every shard signed again: with the current key, after a rotation
            shards = manifest.full_shards(new, update, key, every=True)
        else:
            shards = manifest.update_shards(
                tree, keys, key, serial, change.pages, change.gone, state.shards()
            )
    except BadSignature as exc:
        raise _rotated(exc) from None
    except manifest.MissingShard as exc:
        raise UserError(f"{exc}; run `mirrorfleet origin publish --full` to rebuild") from None
    retired = _retire(tree, change)
    docs = _documents(config, key, keys, current, serial, update, change, shards, mode)
    result.serial, result.changed, result.removed = serial, update.changed, update.removed
    result.written, result.removed_paths = len(docs.record.written), len(docs.record.removed)
    result.complete = docs.record.complete
    if dry_run:
        result.seconds = time.monotonic() - started
        return result
    if mode != FULL:
        _write_pending(pending, serial, update, docs.record)
    for shard, raw in docs.shards.items():
        atomic_write(tree / manifest.shard_path(shard), raw, tree)
    atomic_write(tree / META_DIR / "trace" / config.name, docs.trace, tree)
    # whole seconds: a mirror fetches records over HTTP, whose Last-Modified has no
    # more, and rsync compares to the nanosecond (agent/rsync.py)
    atomic_write(tree / changes_path(serial), docs.record_bytes, tree, mtime=int(time.time()))
    keys_version = publish_keys(tree, config.keys_document)
    seal(tree, key, serial, config.name, config.stamp_lifetime, docs.snapshot, keys=keys_version)
    for rel in retired:
        (tree / rel).unlink(missing_ok=True)
    _prune(tree, serial, config.keep_records, sweep=mode == FULL)
    known = _shards_on_disk(tree) if mode == FULL else state.shards() | set(shards)
    _keep_state(state, change, tree, serial, known, pending)
    if ping and config.ping:
        result.pings = ping_all(config, serial)
    result.seconds = time.monotonic() - started
    return result


def _find_changes(
    change: _Change, listed: ChangeList | None, pending: ChangeList, progress: Callable
) -> None:
    """changed-list and stat: the candidates, each compared with the state."""
    if listed is None:
        projects: Iterable[str] = change.stat_candidates(progress)
        paths: set[str] = set()
    else:
        projects, paths = listed.projects, listed.paths
    if pending:
        progress(f"redoing {len(pending)} entries of a publish that did not finish")
        projects = sorted({*projects, *pending.projects})
        paths = paths | pending.paths
    for name in projects:
        change.project(name)
    for rel in sorted(paths):
        change.path(rel)


def _find_full(
    change: _Change,
    keys: list[Ed25519PublicKey],
    serial: int,
    preset: str,
    progress: Callable[[str], None],
) -> tuple[manifest.ManifestUpdate, manifest.ProjectState]:
    """Every page hashed against the signed manifest; the state built again."""
    old = manifest.load_manifest(change.tree, keys)
    names = project_dirs(change.tree) if preset == "pypi" else []
    hashes: dict[str, str] = {}
    change.state.clear()
    change.state.put_projects(_full_rows(change, names, hashes, progress))
    update = manifest.diff(old, hashes, serial)
    new = dict(old)
    for project in update.removed:
        new.pop(project, None)
    for project in update.changed:
        new[project] = (serial, hashes[project])
    return update, new


def _documents(
    config: OriginConfig,
    key: Ed25519PrivateKey,
    keys: list[Ed25519PublicKey],
    current: Stamp | None,
    serial: int,
    update: manifest.ManifestUpdate,
    change: _Change,
    shards: dict[str, bytes],
    mode: str,
) -> _Docs:
    now = int(time.time())
    trace = _json({"name": config.name, "serial": serial, "ts": now, "upstream": None})
    # a record naming more paths than an agent would copy one by one is no use to
    # it, and would not fit the size every reader accepts: say "sync everything"
    complete = (
        mode != FULL
        and not change.unread
        and len(change.written) + len(change.removed) <= MAX_RECORD_PATHS
    )
    written: list[Written] = []
    if complete:
        own = [(manifest.shard_path(s), raw) for s, raw in shards.items()]
        own.append((f"{META_DIR}/trace/{config.name}", trace))
        for path, raw in own:
            change.write(Written(check_path(path), len(raw), hashlib.sha256(raw).hexdigest()))
        written = sorted(change.written.values(), key=lambda w: w.path)
    record = ChangeRecord(
        serial=serial,
        changed=[*update.changed, *update.removed],
        written=written,
        removed=sorted(change.removed) if complete else [],
        complete=complete,
        keep=config.keep_records,
        prev=current.record if current else "",
    )
    before = None if current is None or mode == FULL else read_local_snapshot(
        config.tree, keys, current.snapshot
    )  # fmt: skip
    # the first snapshot, or one that does not verify, is made from every shard on disk
    base = before or snapshot_of_tree(config.tree, serial)
    return _Docs(shards, trace, record, record.sign(key), base.updated(serial, shards))


def _keep_state(
    state: PublishState,
    change: _Change,
    tree: Path,
    serial: int,
    shards: set[str],
    pending: Path,
) -> None:
    """Commit what this publish found: last, after the stamp."""
    state.put_projects(change.rows)
    state.drop_projects(change.drops)
    state.set_meta(schema=SCHEMA, tree=str(tree.resolve()), serial=serial, shards=sorted(shards))
    state.commit()
    pending.unlink(missing_ok=True)


# -- what a publish that died was doing ------------------------------------------------


def _pending_path(config: OriginConfig) -> Path:
    return config.state_dir / PENDING


def _write_pending(
    path: Path, serial: int, update: manifest.ManifestUpdate, record: ChangeRecord
) -> None:
    """The entries of this change, kept until the state is committed: a publish that
    dies leaves them for the next, which finds them again whatever it is told."""
    paths = [w.path for w in record.written] + record.removed
    entries = [*update.changed, *update.removed]
    entries += [p for p in paths if not p.startswith(f"{META_DIR}/")]
    atomic_write(path, _json({"serial": serial, "entries": entries}), mode=0o640)


def _pending(path: Path, state: PublishState, tree: Path) -> ChangeList:
    """The entries of a publish that wrote into the tree and never committed."""
    try:
        data = json.loads(path.read_bytes())
        serial, entries = int(data["serial"]), list(data["entries"])
    except FileNotFoundError:
        return ChangeList()
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path} is unreadable ({exc}); remove it and publish --full") from None
    if serial <= json.loads(state.meta("serial") or "0"):
        return ChangeList()  # committed after all
    return read_change_list((str(e) for e in entries), tree, source=str(path))


# -- the rest --------------------------------------------------------------------------


def _prune(tree: Path, serial: int, keep: int, sweep: bool) -> None:
    """Drop the record that just fell out of the window; a sweep drops every older one
    (a full publish, or keep_records lowered)."""
    if serial - keep >= 1:
        (tree / changes_path(serial - keep)).unlink(missing_ok=True)
    if not sweep:
        return
    try:
        with os.scandir(tree / CHANGES_DIR) as it:
            names = [e.name for e in it]
    except FileNotFoundError:
        return
    for name in names:
        number = _record_serial(name)
        if number is not None and number <= serial - keep:
            (tree / CHANGES_DIR / name).unlink(missing_ok=True)


def _retire(tree: Path, change: _Change) -> list[str]:
    """Files older versions wrote that nothing reads any more; each goes in the record
    as removed, so mirrors drop it too."""
    found = [rel for rel in RETIRED if os.path.lexists(tree / rel)]
    for rel in found:
        change.remove(rel)
    return found


def _record_serial(name: str) -> int | None:
    stem, dot, ext = name.partition(".")
    return int(stem) if dot and ext == "json" and stem.isdigit() else None


def _shards_on_disk(tree: Path) -> set[str]:
    directory = tree / manifest.MANIFEST_DIR
    return {p.name[:2] for p in directory.glob("??.json")} if directory.is_dir() else set()


def _rotated(exc: BadSignature) -> UserError:
    return UserError(
        f"the tree's own .mirror/ does not verify with this signing key ({exc}); "
        "was the key rotated? move .mirror/ aside to start a new history"
    )


def ping_all(config: OriginConfig, serial: int, event: str = "publish") -> dict[str, int]:
    from concurrent.futures import ThreadPoolExecutor

    from mirrorfleet.notify.ping import send_ping

    secret = read_secret(config.ping_secret)
    payload = {"event": event, "serial": serial, "from": config.name}
    with ThreadPoolExecutor(max_workers=min(16, len(config.ping))) as pool:
        statuses = pool.map(lambda url: send_ping(url, secret, payload), config.ping)
        return dict(zip(config.ping, statuses, strict=True))


def _json(data: object) -> bytes:
    return json.dumps(data, sort_keys=True, indent=1).encode() + b"\n"


def result_dict(result: PublishResult) -> dict[str, object]:
    data = asdict(result)
    data["record"] = {
        "written": data.pop("written"),
        "removed": data.pop("removed_paths"),
        "complete": data.pop("complete"),
    }
    return {**data, "published": result.published}
