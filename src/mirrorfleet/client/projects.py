"""Per-project freshness: a mirror behind the head is still current for the projects
you need when none of them changed since its serial.

The origin writes one signed record per serial naming what it changed
(`.mirror/changes/<serial>.json`). Each is bound to its serial by the signature, so
a mirror cannot pass off an old record as a newer one, and to the head's stamp by
the chain of record hashes; the client fetches the records after the candidate's
serial, up to the head, from a mirror at the head.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet.content.pypi import normalize
from mirrorfleet.errors import UserError
from mirrorfleet.probe.fetch import SpotCheckFailed, Unreachable, fetch
from mirrorfleet.tree.changes import (
    MAX_RECORD,
    ChangeRecord,
    changes_path,
    check_chain,
    parse_record,
)
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.stamp import Stamp

MAX_BEHIND = 10  # serials a mirror may lag and still be checked per project


class ChangesUnavailable(UserError):
    """The change records could not be fetched or did not verify."""


def wanted(projects: Iterable[str]) -> frozenset[str]:
    """Project names as the index spells them (PEP 503)."""
    return frozenset(normalize(p) for p in projects if p.strip())


def fetch_changes(
    base_url: str,
    head: Stamp,
    since: int,
    keys: Sequence[Ed25519PublicKey],
    timeout: float,
) -> dict[int, frozenset[str]]:
    """serial -> the projects it changed, for the serials after `since` up to the head:
    each record verified, and all of them chained to the head's record (a stray
    record of some serial, however well signed, is refused). In parallel, bounded."""
    serials = range(since + 1, head.serial + 1)

    def one(serial: int) -> tuple[ChangeRecord, bytes]:
        url = urljoin(base_url, changes_path(serial))
        try:
            raw = fetch(url, timeout, MAX_RECORD)
        except (Unreachable, SpotCheckFailed) as exc:
            raise ChangesUnavailable(str(exc)) from None
        if raw is None:
            raise ChangesUnavailable(f"{url} is missing")
        try:
            return parse_record(raw, keys, serial), raw
        except BadSignature as exc:
            raise ChangesUnavailable(f"{url}: {exc}") from None

    if len(serials) > MAX_BEHIND:
        raise ChangesUnavailable(f"{len(serials)} serials to check; at most {MAX_BEHIND}")
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(serials)))) as pool:
        records = list(pool.map(one, serials))
    try:
        check_chain(records, head.record)
    except BadSignature as exc:
        raise ChangesUnavailable(f"{base_url}: {exc}") from None
    return {record.serial: frozenset(record.changed) for record, _raw in records}


def changed_since(changes: dict[int, frozenset[str]], serial: int, head: int) -> frozenset[str]:
    return frozenset().union(*(changes[s] for s in range(serial + 1, head + 1)))
