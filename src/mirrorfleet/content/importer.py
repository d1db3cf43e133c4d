"""`origin import`: bring an existing index into the origin's tree, every project in
both page forms.

What it takes (bandersnatch's layout as its source writes it: simple.py's
sync_index_page and the per-project pages, the filesystem storage, its docs'
"Folder Structures"):

    [mirror dir/]web/                     bandersnatch 6 to 8 (or web/ itself)
        simple/<p>/index.html             PEP 503 page; links ../../packages/...
        simple/<p>/index.v1_html          the same bytes (simple-format ALL or HTML)
        simple/<p>/index.v1_json          PEP 691 page (ALL or JSON)
        simple/index.html, index.v1_html, index.v1_json   the root lists
        packages/<aa>/<bb>/<hash>/<file>  each file's mtime is PyPI's upload time
        packages/.../<file>.metadata      core metadata (PEP 658), where upstream has it
        json/<p>, pypi/<p>/json           PyPI's legacy JSON API: not imported (the
                                          fleet serves the simple API), like the
                                          status files (last-modified, local-stats/)
    simple/ + packages/                   a plain PEP 503 tree, same shape

Whatever the source, the imported tree has for every project `index.html` and
`index.v1_json`: a missing JSON page is made from the HTML page and the files
(pages.to_json_page: size and mtime from disk), a missing HTML page from the JSON
page or the `index.v1_html` copy. Upstream's own pages are never replaced by ours.
Root pages that upstream lacks are made, listing every project the tree holds after
the import (those it held before too).

Everything is read and checked before anything is written, so a refused source
leaves no partial import. Refused, with the path and the reason: a symlink leaving
the source, a `..` name, a project folder without a page or with other files, a
name that is not normalized (PEP 503 URLs use the normalized name), a page that
does not parse (pages.PageError), a link that is absolute or leaves `packages/`
(bandersnatch's `root_uri` makes such links), a link or an advertised `.metadata`
file the source does not have (pip fails hard on a missing advertised metadata
file), HTML and JSON pages listing different files, a JSON size that is not the
file's, and bandersnatch's `hash-index` layout (`simple/<letter>/<p>/`).

Hard links keep it instant and space-free on one filesystem; elsewhere it copies
(keeping the mtime, which is the upload time). Order as for add_release: content,
project pages (JSON before HTML), root pages.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mirrorfleet.content import pages
from mirrorfleet.content.dists import normalize
from mirrorfleet.content.pypi import (
    JSON_PAGE,
    METADATA_SUFFIX,
    PAGE,
    project_index_pages,
    root_pages,
)
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.tree.files import atomic_write, tmp_path

__all__ = ["ImportRefused", "import_tree"]

CONTENT = "packages"
SIMPLE = "simple"
V1_HTML = "index.v1_html"
# Page files of a project folder, in write order: HTML last, since index.html is what
# makes a project exist (pypi.project_index_pages, publish).
PAGE_ORDER = (JSON_PAGE, V1_HTML, PAGE)


class ImportRefused(MirrorfleetError, ValueError):
    """A source `import_tree` cannot take as it is; the message says which path and why."""


@dataclass
class _Project:
    name: str
    upstream: dict[str, Path] = field(default_factory=dict)  # page file -> real source file
    made: dict[str, bytes] = field(default_factory=dict)  # page file -> bytes we made


def import_tree(source: Path, tree: Path, written: list[Path] | None = None) -> int:
    """Import `source` (see the module docstring) into `tree`; return the number of
    files the import put there (linked, copied or made). `written` gets the paths
    under `tree` that were (re)made, in order: a file already there is not."""
    source, tree = Path(source), Path(tree)
    base = source / "web" if (source / "web" / SIMPLE).is_dir() else source
    if not (base / SIMPLE).is_dir():
        raise ImportRefused(f"{source}: no simple/ (nor web/simple/) to import")
    root = Path(os.path.realpath(source))
    content: dict[str, Path] = {}
    simple: list[tuple[Path, Path]] = []
    for top in (CONTENT, SIMPLE):
        if not (base / top).exists():
            continue
        real_top = Path(os.path.realpath(base / top))
        if not real_top.is_relative_to(root):
            raise ImportRefused(f"refusing symlink pointing outside the source: {base / top}")
        for rel, real in _walk_checked(root, base / top):
            if top == CONTENT:
                content[f"{CONTENT}/{rel.as_posix()}"] = real
            else:
                simple.append((rel, real))
    projects, root_files = _group(simple)
    for project in projects:
        _check_project(project, content)
    # only what upstream lacks: its own root pages are never replaced. Ours list the
    # projects the tree already held too (the demo's, an earlier import's): an import
    # adds to an index, it does not hide what was there.
    listed = sorted(project_index_pages(tree).keys() | {p.name for p in projects})
    made_root = {name: data for name, data in root_pages(listed) if name not in root_files}

    # Everything checked: now write, content first.
    out: list[Path] = [] if written is None else written
    count = 0
    for rel, real in content.items():
        count += 1
        if _link_or_copy(real, tree / rel):
            out.append(tree / rel)
    for project in projects:
        directory = tree / SIMPLE / project.name
        for name in PAGE_ORDER:
            count += _put(directory / name, project.upstream.get(name), project.made.get(name), out)
    for name in sorted(root_files.keys() | made_root.keys(), key=_root_order):
        count += _put(tree / SIMPLE / name, root_files.get(name), made_root.get(name), out)
    return count


def _root_order(name: str) -> tuple[int, str]:
    return (PAGE_ORDER.index(name) if name in PAGE_ORDER else -1, name)


def _put(dst: Path, upstream: Path | None, made: bytes | None, out: list[Path]) -> int:
    """Link upstream's file or write ours; 1 when the tree now holds one, else 0."""
    if upstream is not None:
        if _link_or_copy(upstream, dst):
            out.append(dst)
        return 1
    if made is not None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if atomic_write(dst, made, durable=False, unless_same=True):
            out.append(dst)
        return 1
    return 0


def _group(simple: list[tuple[Path, Path]]) -> tuple[list[_Project], dict[str, Path]]:
    """simple/'s files as projects (sorted by name) and simple/'s own files."""
    projects: dict[str, _Project] = {}
    root_files: dict[str, Path] = {}
    for rel, real in simple:
        parts = rel.parts
        if len(parts) == 1:
            root_files[parts[0]] = real
            continue
        if len(parts) > 2:
            raise ImportRefused(
                f"{SIMPLE}/{parts[0]}/{parts[1]}/: a folder inside a project's folder; "
                "bandersnatch's hash-index layout (simple/<letter>/<project>/) is not "
                "supported: mirror with hash-index = false"
            )
        name, page = parts
        if normalize(name) != name:
            raise ImportRefused(
                f"{SIMPLE}/{name}/: not a normalized project name (PEP 503 serves it as "
                f"{SIMPLE}/{normalize(name)}/); remove or rename it"
            )
        if page not in PAGE_ORDER:
            raise ImportRefused(
                f"{SIMPLE}/{name}/{page}: not a project page (a project folder holds "
                f"{', '.join(PAGE_ORDER)})"
            )
        projects.setdefault(name, _Project(name)).upstream[page] = real
    return [projects[name] for name in sorted(projects)], root_files


def _check_project(project: _Project, content: dict[str, Path]) -> None:
    """Parse and check the project's pages, and make the forms it lacks."""
    where = f"{SIMPLE}/{project.name}/"
    docs: dict[str, dict[str, Any]] = {}
    for name in (PAGE, V1_HTML):
        if name in project.upstream:
            data = _read(project.upstream[name], where + name)
            docs[name] = pages.parse_html(data, project.name, source=where + name)
    if JSON_PAGE in project.upstream:
        data = _read(project.upstream[JSON_PAGE], where + JSON_PAGE)
        docs[JSON_PAGE] = pages.parse_json(data, project.name, source=where + JSON_PAGE)
    targets: dict[str, str] = {}  # filename -> content path
    listed: dict[str, set[str]] = {}
    for name, doc in docs.items():
        links = _links(doc, project.name, content, where + name)
        listed[name] = set(links)
        targets.update(links)
    first = next(iter(listed))
    for name, names in listed.items():
        if names != listed[first]:
            diff = sorted(names ^ listed[first])[:3]
            raise ImportRefused(f"{where}: {first} and {name} list different files ({diff})")
    if JSON_PAGE in docs:
        for entry in docs[JSON_PAGE]["files"]:
            size = entry.get("size")
            real = content[targets[entry["filename"]]]
            if size is not None and size != real.stat().st_size:
                raise ImportRefused(
                    f"{where}{JSON_PAGE}: {entry['filename']} says {size} bytes, the file "
                    f"has {real.stat().st_size}"
                )

    def facts(entry: dict[str, Any]) -> pages.FileFacts:
        st = content[targets[entry["filename"]]].stat()
        return pages.FileFacts(st.st_size, st.st_mtime)

    if JSON_PAGE not in docs:
        html_doc = docs.get(PAGE) or docs[V1_HTML]
        project.made[JSON_PAGE] = pages.render_json(pages.to_json_page(html_doc, facts))
    if PAGE not in docs:
        if V1_HTML in project.upstream:
            project.made[PAGE] = _read(project.upstream[V1_HTML], where + V1_HTML)
        else:
            project.made[PAGE] = pages.render_html(docs[JSON_PAGE])


def _links(
    doc: dict[str, Any], project: str, content: dict[str, Path], source: str
) -> dict[str, str]:
    """filename -> the content path each file entry links; refuses what a mirror could
    not serve from this tree."""
    found = {}
    for entry in doc["files"]:
        url, filename = entry["url"], entry["filename"]
        where = f"{source}: {filename}"
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or url.startswith("/"):
            raise ImportRefused(
                f"{where} links {url}: only relative links into {CONTENT}/ are imported "
                "(bandersnatch's root_uri makes absolute ones)"
            )
        if parts.query:
            raise ImportRefused(f"{where} links {url}: a query is not a file")
        path = posixpath.normpath(posixpath.join(f"{SIMPLE}/{project}", unquote(parts.path)))
        if not path.startswith(f"{CONTENT}/"):
            raise ImportRefused(f"{where} links {url}, outside {CONTENT}/ of the tree")
        if path not in content:
            raise ImportRefused(f"{where} links {path}, which the source does not have")
        if pages.metadata_advertised(entry) and path + METADATA_SUFFIX not in content:
            raise ImportRefused(
                f"{where} advertises core metadata, but {path}{METADATA_SUFFIX} is not in "
                "the source (pip fails on a missing advertised .metadata)"
            )
        found[filename] = path
    return found


def _read(path: Path, source: str) -> bytes:
    with path.open("rb") as f:
        data = f.read(pages.MAX_PAGE_BYTES + 1)
    if len(data) > pages.MAX_PAGE_BYTES:
        raise pages.PageError(f"{source}: larger than {pages.MAX_PAGE_BYTES} bytes")
    return data


def _walk_checked(root: Path, top: Path) -> Iterator[tuple[Path, Path]]:
    """Yield (relative path under top, real file) for every file, refusing escapes.

    Symlinks are followed only while they stay inside ``root``; the real file is what
    gets imported, so the tree never holds a link that could dangle on a mirror.
    Dotfiles (half-written temporaries) are left out: nothing serves them.
    """
    stack: list[tuple[Path, Path, frozenset[str]]] = [(top, Path(), frozenset())]
    while stack:
        directory, rel_dir, ancestors = stack.pop()
        real_dir = os.path.realpath(directory)
        if real_dir in ancestors:
            continue  # a symlink loop back into its own ancestor
        ancestors |= {real_dir}
        with os.scandir(directory) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = rel_dir / entry.name
            if ".." in entry.name:
                raise ImportRefused(f"refusing path containing '..': {directory / entry.name}")
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            real = Path(os.path.realpath(path))
            if entry.is_symlink() and not real.is_relative_to(root):
                raise ImportRefused(f"refusing symlink pointing outside the source: {path}")
            if real.is_dir():
                stack.append((path, rel, ancestors))
            elif real.is_file():
                yield rel, real
            elif entry.is_symlink():
                raise ImportRefused(f"refusing dangling symlink: {path}")


def _link_or_copy(src: Path, dst: Path) -> bool:
    """True if dst was (re)made; False when it already is src's file."""
    try:
        if os.path.samestat(src.stat(), dst.stat()):
            return False
    except FileNotFoundError:
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(dst)
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:  # EXDEV across filesystems, EPERM on protected_hardlinks, ...
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True
