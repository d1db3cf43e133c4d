"""Source trees for `origin import` (content/importer.py), in each layout it takes:
bandersnatch's mirror directory and a plain PEP 503 tree. The unit tests fill them
with made-up bytes; the client lab step (tests/integration/test_fleet.py) with the
real files of tests/wheelcache.py.

    bandersnatch(dists, dest)   dest/web/: simple/<p>/index.html, index.v1_html,
                                index.v1_json; packages/aa/bb/<hash>/<file> and
                                <wheel>.metadata (PEP 658) beside each wheel; the
                                legacy JSON API and last-modified, as bandersnatch 6-8
                                write them
    plain(dists, dest)          dest/simple/<p>/index.html only (no JSON page, no
                                .metadata: the shape of older indexes), and
                                dest/packages/<p>/<file>
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path

from mirrorfleet.content import pypi
from mirrorfleet.content.dists import file_version, normalize

UPLOADED = 1_600_000_000  # 2020-09-13T12:26:40Z


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Bandersnatch:
    """A bandersnatch mirror directory: web/ under `root`, files in PyPI's hashed folders.

    The pages are written the way bandersnatch's source writes them (simple.py: its
    own HTML, not ours), the file's mtime is the upload time (the filesystem storage's
    set_upload_time), core metadata files sit beside the packages, and the legacy JSON
    API under json/ and pypi/."""

    def __init__(self, root: Path, simple_format: str = "ALL") -> None:
        self.web = root / "web"
        self.format = simple_format
        self.projects: dict[str, list[dict]] = {}

    def add(self, project: str, filename: str, body: bytes, **extra: object) -> str:
        digest = hashlib.blake2b(body, digest_size=32).hexdigest()
        path = f"packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"
        target = self.web / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        entry = {
            "filename": filename,
            "url": f"../../{path}",
            "hashes": {"sha256": sha(body)},
            "requires-python": extra.pop("requires_python", ">=3.8"),
            "size": len(body),
            "upload-time": "2020-09-13T12:26:40.000000Z",
            "yanked": extra.pop("yanked", False),
        }
        metadata = extra.pop("metadata", None)
        if metadata is not None:
            target.with_name(filename + ".metadata").write_bytes(metadata)
            entry["core-metadata"] = {"sha256": sha(metadata)}
        entry.update(extra)
        os.utime(target, (UPLOADED, UPLOADED))  # storage.set_upload_time
        self.projects.setdefault(project, []).append(entry)
        return path

    def html(self, project: str) -> str:
        lines = [
            "<!DOCTYPE html>\n<html>\n  <head>\n",
            '    <meta name="pypi:repository-version" content="1.0">\n',
            f"    <title>Links for {project}</title>\n  </head>\n  <body>\n",
            f"    <h1>Links for {project}</h1>\n",
        ]
        for f in sorted(self.projects[project], key=lambda f: f["filename"]):
            attrs = ""
            if f["requires-python"]:
                attrs += f' data-requires-python="{f["requires-python"].replace(">", "&gt;")}"'
            if f["yanked"]:
                attrs += f' data-yanked="{f["yanked"] if isinstance(f["yanked"], str) else ""}"'
            if "core-metadata" in f:
                value = f"sha256={f['core-metadata']['sha256']}"
                attrs += f' data-core-metadata="{value}" data-dist-info-metadata="{value}"'
            lines.append(
                f'    <a href="{f["url"]}#sha256={f["hashes"]["sha256"]}"{attrs}>'
                f"{f['filename']}</a><br/>\n"
            )
        lines.append("  </body>\n</html>\n<!--SERIAL 42-->")
        return "".join(lines)

    def json(self, project: str) -> str:
        files = self.projects[project]
        versions = {file_version(f["filename"], project) or "" for f in files}
        doc = {
            "files": sorted(files, key=lambda f: f["filename"]),
            "meta": {"api-version": "1.1", "_last-serial": "42"},
            "name": project,
            "versions": sorted(versions - {""}),
        }
        return json.dumps(doc)

    def write(self) -> Path:
        """The pages, the root lists and the files bandersnatch keeps beside them."""
        simple = self.web / "simple"
        for project in self.projects:
            folder = simple / project
            folder.mkdir(parents=True, exist_ok=True)
            if self.format in ("ALL", "HTML"):
                (folder / "index.html").write_text(self.html(project))
                (folder / "index.v1_html").write_text(self.html(project))
            if self.format in ("ALL", "JSON"):
                (folder / "index.v1_json").write_text(self.json(project))
            (self.web / "json").mkdir(exist_ok=True)
            (self.web / "json" / project).write_text("{}")
            (self.web / "pypi" / project).mkdir(parents=True, exist_ok=True)
            (self.web / "pypi" / project / "json").symlink_to(self.web / "json" / project)
        names = sorted(self.projects)
        root_html = "".join(f'    <a href="{n}/">{n}</a><br/>\n' for n in names)
        if self.format in ("ALL", "HTML"):
            (simple / "index.html").write_text(f"<html><body>\n{root_html}</body></html>")
            (simple / "index.v1_html").write_text(f"<html><body>\n{root_html}</body></html>")
        if self.format in ("ALL", "JSON"):
            doc = {"meta": {"_last-serial": 42, "api-version": "1.1"}, "projects": []}
            doc["projects"] = [{"name": n} for n in names]
            (simple / "index.v1_json").write_text(json.dumps(doc))
        (self.web / "last-modified").write_text("20240101T00:00:00\n")
        return self.web.parent


# ---------------------------------------------------------------- real distributions


def wheel_metadata(path: Path) -> bytes:
    """A wheel's METADATA: byte for byte what PyPI serves as its `.metadata` file."""
    with zipfile.ZipFile(path) as zf:
        members = [
            m for m in zf.namelist() if m.endswith(".dist-info/METADATA") and m.count("/") == 1
        ]
        if len(members) != 1:
            raise ValueError(f"{path.name}: {len(members)} .dist-info/METADATA files")
        return zf.read(members[0])


def requires_python(path: Path) -> str | None:
    """Requires-Python from a wheel's METADATA or an sdist's PKG-INFO."""
    with path.open("rb") as f:
        return pypi._dist_requires_python(f, path.name)


def project_of(path: Path) -> str:
    """The normalized project a distribution file belongs to."""
    name = path.name
    stem = name.split("-")[0] if name.endswith(".whl") else name.rpartition("-")[0]
    return normalize(stem)


def bandersnatch(files: Iterable[Path], dest: Path) -> Path:
    """A bandersnatch mirror directory (simple-format ALL) holding `files`, with a
    `.metadata` file beside every wheel, advertised in both page forms; returns it."""
    bs = Bandersnatch(dest)
    for path in sorted(files):
        metadata = wheel_metadata(path) if path.name.endswith(".whl") else None
        bs.add(
            project_of(path),
            path.name,
            path.read_bytes(),
            requires_python=requires_python(path),
            **({"metadata": metadata} if metadata is not None else {}),
        )
    return bs.write()


def plain(files: Iterable[Path], dest: Path) -> Path:
    """A plain PEP 503 tree holding `files`: HTML pages only (the demo writer's pages,
    less its JSON ones), no `.metadata`; returns it."""
    projects = set()
    for path in files:
        project = project_of(path)
        target = dest / "packages" / project / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        projects.add(project)
    for project in sorted(projects):
        pypi.write_project_index(dest, project)
    pypi.write_root_index(dest)
    for page in (dest / "simple").rglob(pypi.JSON_PAGE):
        page.unlink()
    return dest
