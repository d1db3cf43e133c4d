"""What DNS should list, given what the monitor believes, and what DNS says now.

Fail static: when fewer than `min_listed` mirrors are up, the monitor trusts its
own view less than the last published list (its network may be the broken part),
so every mirror DNS lists now keeps its record unchanged. When nothing is listed at
all, the freshest mirrors are listed as lagging rather than leaving an empty set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import dns.exception
import dns.rdata

from mirrorfleet.errors import UserError
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.zone.records import (
    HEAD,
    META,
    STATES,
    MirrorRecord,
    RecordSet,
    parse_txt,
    stamp_from_head,
)


@dataclass(frozen=True)
class Published:
    """A mirror as the zone shows it now."""

    state: str
    serial: int
    ts: int
    chk: int


def read_published(live: Iterable[RecordSet]) -> dict[str, Published]:
    """Each mirror's meta record (SRV lists exactly those not st=down, as one update
    writes both); hostile or malformed records are skipped."""
    found: dict[str, Published] = {}
    for rrset in live:
        if rrset.rdtype != "TXT" or not rrset.name.endswith(f".{META}") or len(rrset.values) != 1:
            continue
        label = rrset.name[: -len(META) - 1]
        try:
            fields = parse_txt(_strings(rrset.values[0]))
            if fields.get("st") not in STATES:
                continue
            found[label] = Published(
                state=fields["st"],
                serial=int(fields["serial"]),
                ts=int(fields["ts"]),
                chk=int(fields["chk"]),
            )
        except (UserError, KeyError, ValueError):
            continue
    return found


def read_head(live: Iterable[RecordSet]) -> tuple[Stamp, bytes, str] | None:
    """The head the zone publishes (its signature is checked by the caller)."""
    for rrset in live:
        if (rrset.name, rrset.rdtype) == (HEAD, "TXT") and len(rrset.values) == 1:
            try:
                return stamp_from_head(parse_txt(_strings(rrset.values[0])))
            except UserError:
                return None
    return None


def _strings(value: str) -> list[bytes]:
    try:
        return list(dns.rdata.from_text("IN", "TXT", value).strings)
    except (dns.exception.DNSException, ValueError) as exc:
        raise UserError(f"unparsable TXT {value[:40]!r}: {exc}") from None


def fail_static(
    judged: Sequence[MirrorRecord],
    published: Mapping[str, Published],
    min_listed: int,
) -> tuple[list[MirrorRecord], set[str]]:
    """The records to publish, and the labels held at their published state."""
    up = [m for m in judged if m.state != "down"]
    if len(up) >= min_listed or not judged:
        return list(judged), set()
    was_listed = {label for label, p in published.items() if p.state != "down"}
    held: set[str] = {m.label for m in judged if m.state == "down" and m.label in was_listed}
    if len(up) + len(held) < min_listed:
        spare = sorted(
            (m for m in judged if m.state == "down" and m.label not in held and m.serial > 0),
            key=lambda m: (-m.serial, m.label),
        )
        held |= {m.label for m in spare[: min_listed - len(up) - len(held)]}
    records = []
    for mirror in judged:
        if mirror.label not in held:
            records.append(mirror)
            continue
        before = published.get(mirror.label)
        if before is not None and before.state != "down":
            mirror = replace(
                mirror, state=before.state, serial=before.serial, ts=before.ts, chk=before.chk
            )
        else:
            mirror = replace(mirror, state="lagging")
        records.append(mirror)
    return records, held
