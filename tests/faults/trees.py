"""Small trees in the shape of each preset, grown a release at a time the way their
upstreams grow (a file first, then the index naming it; an index rewritten before a
file it named goes), and a check that reads a tree as that preset's clients do.

The check is what "torn" means for the preset: an index that names a file which is
missing or differs from the hash the index gives.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def payload(name: str, size: int) -> bytes:
    return (name.encode() + b"\n") * (size // (len(name) + 1) + 1)


@dataclass
class PypiTree:
    """PEP 503: packages/<project>/<file>, linked from simple/<project>/index.html
    with #sha256= fragments, and every project named in simple/index.html."""

    root: Path
    preset: str = "pypi"

    def add(self, project: str, version: str, size: int = 4096) -> str:
        name = f"{project}-{version}.tar.gz"
        write(self.root / "packages" / project / name, payload(name, size))
        self._index(project)
        return f"packages/{project}/{name}"

    def drop(self, project: str, version: str) -> None:
        path = self.root / "packages" / project / f"{project}-{version}.tar.gz"
        folder = path.parent
        path.rename(folder.parent / f".{path.name}.dropped")  # out of the index's sight
        self._index(project)
        (folder.parent / f".{path.name}.dropped").unlink()

    def _index(self, project: str) -> None:
        files = sorted((self.root / "packages" / project).iterdir())
        links = "".join(
            f'<a href="../../packages/{project}/{f.name}#sha256={sha256(f)}">{f.name}</a>\n'
            for f in files
        )
        write(self.root / "simple" / project / "index.html", links.encode())
        projects = sorted(p.name for p in (self.root / "simple").iterdir() if p.is_dir())
        root = "".join(f'<a href="{p}/">{p}</a>\n' for p in projects)
        write(self.root / "simple" / "index.html", root.encode())

    def torn(self, tree: Path) -> list[str]:
        problems = []
        root = tree / "simple" / "index.html"
        if not root.exists():
            return ["simple/index.html missing"]
        for project in re.findall(r'href="([^"/]+)/"', root.read_text()):
            page = tree / "simple" / project / "index.html"
            if not page.exists():
                problems.append(f"simple/index.html names {project}, which has no page")
                continue
            for href, digest in re.findall(
                r'href="([^"#]+)#sha256=([0-9a-f]{64})"', page.read_text()
            ):
                rel = os.path.normpath(f"simple/{project}/{href}")
                problems += _check_file(tree, rel, digest, f"simple/{project}/index.html")
        return problems


@dataclass
class DebianTree:
    """A Debian archive's shape: pool/ for content, dists/ for indexes, and dists
    sorts before pool, the order that once made a sync's last pass unsafe."""

    root: Path
    preset: str = "debian"
    PACKAGES = "dists/stable/main/binary-all/Packages"
    BY_HASH = "dists/stable/main/binary-all/by-hash/SHA256"

    def add(self, package: str, version: str, size: int = 4096) -> str:
        path = f"pool/main/{package[0]}/{package}/{package}_{version}_all.deb"
        write(self.root / path, payload(path, size))
        self._index()
        return path

    def drop(self, package: str, version: str) -> None:
        path = self.root / f"pool/main/{package[0]}/{package}/{package}_{version}_all.deb"
        hidden = path.with_name(f".{path.name}.dropped")
        path.rename(hidden)
        self._index()
        hidden.unlink()

    def _index(self) -> None:
        """Packages goes to its path and to by-hash/ (a new file, never rewritten);
        Release, which names it, is written last, as Debian's archive software does."""
        stanzas = []
        for deb in sorted((self.root / "pool").rglob("*.deb")):
            package, version, _arch = deb.stem.split("_")
            stanzas.append(
                f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
                f"Filename: {deb.relative_to(self.root)}\nSize: {deb.stat().st_size}\n"
                f"SHA256: {sha256(deb)}\n"
            )
        packages = "\n".join(stanzas).encode()
        digest = hashlib.sha256(packages).hexdigest()
        write(self.root / self.PACKAGES, packages)
        write(self.root / self.BY_HASH / digest, packages)
        release = (
            "Origin: mirrorfleet-test\nSuite: stable\nAcquire-By-Hash: yes\nSHA256:\n"
            f" {digest} {len(packages)} main/binary-all/Packages\n"
        )
        write(self.root / "dists/stable/Release", release.encode())

    def torn(self, tree: Path) -> list[str]:
        """apt with Acquire-By-Hash: Release, then Packages by its hash, then files."""
        release = tree / "dists/stable/Release"
        if not release.exists():
            return ["dists/stable/Release missing"]
        found = re.findall(
            r"^ ([0-9a-f]{64}) \d+ main/binary-all/Packages$", release.read_text(), re.M
        )
        if len(found) != 1:
            return ["dists/stable/Release names no Packages"]
        by_hash = f"{self.BY_HASH}/{found[0]}"
        problems = _check_file(tree, by_hash, found[0], "dists/stable/Release")
        if problems:
            return problems
        stanzas = re.findall(
            r"^Filename: (\S+)\n(?:.+\n)*?SHA256: (\S+)$", (tree / by_hash).read_text(), re.M
        )
        for name, digest in stanzas:
            problems += _check_file(tree, name, digest, by_hash)
        return problems


def _check_file(tree: Path, rel: str, digest: str, named_by: str) -> list[str]:
    path = tree / rel
    if not path.exists():
        return [f"{named_by} names {rel}, which is missing"]
    if sha256(path) != digest:
        return [f"{named_by} names {rel}, which does not match its hash"]
    return []


SHAPES = {"pypi": PypiTree, "debian": DebianTree}
