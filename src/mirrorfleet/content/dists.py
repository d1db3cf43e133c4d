"""Project names, versions and distribution file names, as the simple API needs them.

The pages (pages.py) and the demo generator (pypi.py) both need to know which version
a file belongs to (PEP 700's `versions` must cover every file) and how versions sort;
keeping that here lets both use it without importing each other. Parsing is
deliberately narrow: a file name we cannot read is reported as such (None), never
guessed into a wrong version.

Standard library only: this also runs on hosts that have only Debian's python3.
"""

from __future__ import annotations

import re

# A public PEP 440 version (no local part): keeps wheel file names unambiguous.
VERSION_RE = re.compile(
    r"^(?:(?P<epoch>\d+)!)?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre_l>a|b|c|rc|alpha|beta|pre|preview)[-_.]?(?P<pre_n>\d*))?"
    r"(?:-(?P<post_n1>\d+)|[-_.]?(?:post|rev|r)[-_.]?(?P<post_n2>\d*))?"
    r"(?:[-_.]?dev[-_.]?(?P<dev_n>\d*))?$",
    re.IGNORECASE,
)
_PRE_RANK = {"a": 0, "alpha": 0, "b": 1, "beta": 1, "c": 2, "rc": 2, "pre": 2, "preview": 2}
# Source and old binary formats that are "<name>-<version><ext>" (sdists first: the
# only ones PEP 625 still allows; the rest are what old projects on an index still hold).
SDIST_EXTS = (".tar.gz", ".zip")
_OTHER_EXTS = (".tar.bz2", ".tar.xz", ".tar.Z", ".tgz", ".tbz", ".tar")


def normalize(name: str) -> str:
    """PEP 503 name: the directory name and the key every client uses."""
    return re.sub(r"[-_.]+", "-", name).lower()


def version_key(version: str) -> tuple:
    """PEP 440 ordering for the versions we can parse; anything else sorts last, by text."""
    m = VERSION_RE.match(version)
    if not m:
        return (1, version)
    release = [int(x) for x in m["release"].split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    post_n = m["post_n1"] or m["post_n2"]
    has_post = m["post_n1"] is not None or m["post_n2"] is not None
    has_dev = m["dev_n"] is not None
    if m["pre_l"]:
        pre: tuple = (0, _PRE_RANK[m["pre_l"].lower()], int(m["pre_n"] or 0))
    elif has_dev and not has_post:
        pre = (-1,)  # 1.0.dev1 < 1.0a1
    else:
        pre = (1,)
    post = (0, int(post_n or 0)) if has_post else (-1,)
    dev = (0, int(m["dev_n"] or 0)) if has_dev else (1,)
    return (0, int(m["epoch"] or 0), tuple(release), pre, post, dev)


def file_version(filename: str, project: str | None = None) -> str | None:
    """The version a distribution file belongs to, or None when its name does not say.

    Wheels and eggs put it in the second dash-separated field. Sdists are
    "<name>-<version>.<ext>", but an old sdist's name may itself hold dashes
    ("foo-bar-1.0.tar.gz"): given the project, the name part is the prefix that
    normalizes to it; without one, the last dash splits.
    """
    if filename.endswith((".whl", ".egg")):
        parts = filename[:-4].split("-")
        if filename.endswith(".whl") and len(parts) not in (5, 6):
            return None
        return parts[1] if len(parts) >= 2 and parts[1] else None
    for ext in (*SDIST_EXTS, *_OTHER_EXTS):
        if filename.endswith(ext):
            stem = filename[: -len(ext)]
            break
    else:
        return None
    if project is not None:
        target = normalize(project)
        for i, char in enumerate(stem):
            if char == "-" and normalize(stem[:i]) == target:
                return stem[i + 1 :] or None
    name, sep, version = stem.rpartition("-")
    return version if sep and name and version else None
