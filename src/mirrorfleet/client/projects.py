"""Per-project freshness: a mirror behind the head is still current for the projects
you need when none of them changed since its serial.

The origin writes one signed record per serial naming what it changed
(`.mirror/changes/<serial>.json`). Each is bound to its serial by the signature, so
a mirror cannot pass off an old record as a newer one; the client fetches the
records after the candidate's serial, up to the head, from a mirror at the head.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet.content.pypi import normalize
from mirrorfleet.errors import UserError
from mirrorfleet.probe.fetch import SpotCheckFailed, Unreachable, fetch
from mirrorfleet.tree.changes import MAX_RECORD, changes_path, parse_changes
from mirrorfleet.tree.signed import BadSignature

MAX_BEHIND = 10  # serials a mirror may lag and still be checked per project


class ChangesUnavailable(UserError):
    """The change records could not be fetched or did not verify."""


def wanted(projects: Iterable[str]) -> frozenset[str]:
    """Project names as the index spells them (PEP 503)."""
    return frozenset(normalize(p) for p in projects if p.strip())


def fetch_changes(
    base_url: str,
    serials: Sequence[int],
    keys: Sequence[Ed25519PublicKey],
    timeout: float,
) -> dict[int, frozenset[str]]:
    """serial -> the projects it changed, each record verified; in parallel, bounded."""

    def one(serial: int) -> tuple[int, frozenset[str]]:
        url = urljoin(base_url, changes_path(serial))
        try:
            raw = fetch(url, timeout, MAX_RECORD)
        except (Unreachable, SpotCheckFailed) as exc:
            raise ChangesUnavailable(str(exc)) from None
        if raw is None:
            raise ChangesUnavailable(f"{url} is missing")
        try:
            return serial, frozenset(parse_changes(raw, keys, serial))
        except BadSignature as exc:
            raise ChangesUnavailable(f"{url}: {exc}") from None

    if len(serials) > MAX_BEHIND:
        raise ChangesUnavailable(f"{len(serials)} serials to check; at most {MAX_BEHIND}")
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(serials)))) as pool:
        return dict(pool.map(one, serials))


def changed_since(changes: dict[int, frozenset[str]], serial: int, head: int) -> frozenset[str]:
    return frozenset().union(*(changes[s] for s in range(serial + 1, head + 1)))
