"""The DNS record schema, version 1 (docs/DNS.md): what the fleet looks like in DNS.

Pure: fleet state in, record sets out. Every value is checked with dnspython's own
parsers and against the limits that bite in practice (255-byte TXT strings, BIND's
100 records per set, a 1,232-byte UDP answer), so a bad label or an oversized value
is refused before anything is sent to a server.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.rrset

from mirrorfleet.errors import UserError
from mirrorfleet.tree.signed import BadSignature, canonical
from mirrorfleet.tree.stamp import STAMP_VERSION, Stamp, stamp_from_fields

SCHEMA_VERSION = 2  # 2: the head carries the stamp's expiry, snapshot and record
SERVICE = "_pkgmirror._tcp"
HEAD = "_head._pkgmirror"
META = "_meta._pkgmirror"
OWNER = "_owner._pkgmirror"
PRIORITY = {"fresh": 10, "lagging": 20}
STATES = ("fresh", "lagging", "down")
MAIN_SRV_LIMIT = 16  # fits a 1,232-byte UDP answer with room to spare
MAX_RRSET = 100  # BIND 9.18's max-records-per-type
MAX_TXT_STRING = 255
MAX_TXT_TOTAL = 400  # the head's ten strings take at most 396 (a 63-byte origin name)
UDP_ANSWER = 1232
LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
KEY_RE = re.compile(r"[a-z]{1,16}")
# printable ASCII without space, quote or backslash (fullmatch: no trailing newline)
SAFE_VALUE_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]*")
SIG_BYTES = 64


@dataclass(frozen=True)
class MirrorRecord:
    """One mirror as the monitor sees it."""

    label: str  # DNS label of its meta record, e.g. "mirror1"
    target: str  # host name clients connect to
    state: str  # fresh | lagging | down
    serial: int
    ts: int  # when it last synced (the stamp's time)
    chk: int  # when the monitor last checked it
    url: str
    port: int = 80
    weight: int = 100  # capacity, RFC 2782 weight
    region: str | None = None


@dataclass(frozen=True)
class RecordSet:
    name: str  # relative to the zone
    rdtype: str
    ttl: int
    values: tuple[str, ...]

    def to_dnspython(self, zone: str) -> dns.rrset.RRset:
        origin = dns.name.from_text(zone)
        return dns.rrset.from_text_list(
            dns.name.from_text(self.name, origin=origin),
            self.ttl,
            "IN",
            self.rdtype,
            list(self.values),
            origin=origin,
        )


def _bad(message: str) -> UserError:
    return UserError(f"DNS schema v{SCHEMA_VERSION}: {message}")


def check_label(label: str, what: str = "label") -> str:
    if not isinstance(label, str) or not LABEL_RE.fullmatch(label):
        raise _bad(f"{what} {label!r} is not a DNS label (a-z, 0-9, '-', at most 63)")
    return label


def txt_value(pairs: Sequence[tuple[str, str | int]]) -> str:
    """Presentation form: one quoted key=value string per pair, ASCII only."""
    strings = []
    for key, value in pairs:
        text = f"{key}={value}"
        if not KEY_RE.fullmatch(key) or not SAFE_VALUE_RE.fullmatch(str(value)):
            raise _bad(f"TXT string {text[:40]!r} is not printable ASCII key=value")
        if len(text) > MAX_TXT_STRING:
            raise _bad(f"TXT string {key}=... is {len(text)} bytes (at most {MAX_TXT_STRING})")
        strings.append(text)
    total = sum(len(s) + 1 for s in strings)
    if total > MAX_TXT_TOTAL:
        raise _bad(f"TXT record of {total} bytes is over {MAX_TXT_TOTAL}")
    return " ".join(f'"{s}"' for s in strings)


def parse_txt(strings: Iterable[bytes]) -> dict[str, str]:
    """A TXT record's strings as key -> value; hostile or malformed input is refused."""
    fields: dict[str, str] = {}
    total = 0
    for raw in strings:
        total += len(raw) + 1
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise _bad("TXT string is not ASCII") from None
        key, sep, value = text.partition("=")
        if not sep or not KEY_RE.fullmatch(key) or not SAFE_VALUE_RE.fullmatch(value):
            raise _bad(f"TXT string {text[:40]!r} is not key=value")
        if key in fields:
            raise _bad(f"TXT key {key!r} appears twice")
        fields[key] = value
    if total > MAX_TXT_TOTAL:
        raise _bad(f"TXT record of {total} bytes is over {MAX_TXT_TOTAL}")
    if fields.get("txtvers") != str(SCHEMA_VERSION):
        raise _bad(f"unsupported txtvers {fields.get('txtvers')!r}")
    return fields


def head_rrset(stamp: Stamp, signature: bytes, key_id: str, ttl: int) -> RecordSet:
    """The origin's stamp, with the very signature it carries in .mirror/stamp.json."""
    if len(signature) != SIG_BYTES:
        raise _bad("an Ed25519 signature is 64 bytes")
    value = txt_value(
        [
            ("txtvers", SCHEMA_VERSION),
            ("serial", stamp.serial),
            ("ts", stamp.ts),
            ("exp", stamp.expires),
            ("origin", check_label(stamp.origin, "origin name")),
            ("snap", stamp.snapshot),
            ("rec", stamp.record),
            ("kv", stamp.keys),
            ("kid", key_id),
            ("sig", base64.b64encode(signature).decode()),
        ]
    )
    return RecordSet(HEAD, "TXT", ttl, (value,))


def stamp_from_head(fields: Mapping[str, str]) -> tuple[Stamp, bytes, str]:
    """Rebuild the stamp and the bytes its signature covers, for the client to verify."""
    try:
        stamp = stamp_from_fields(
            {
                "serial": fields["serial"],
                "ts": fields["ts"],
                "expires": fields["exp"],
                "origin": fields["origin"],
                "snapshot": fields["snap"],
                "record": fields["rec"],
                "keys": fields["kv"],
                "v": STAMP_VERSION,
            }
        )
        signature = base64.b64decode(fields["sig"], validate=True)
        return stamp, signature, fields["kid"]
    except (KeyError, ValueError, BadSignature) as exc:
        raise _bad(f"head TXT lacks a valid field: {exc}") from None


def signed_bytes(stamp: Stamp) -> bytes:
    return canonical(stamp.signed())


def meta_label(target: str) -> str:
    """The meta record's label for an SRV target: its first label."""
    return target.rstrip(".").split(".", 1)[0].lower()


def meta_name(target: str) -> str:
    """Where a client finds an SRV target's meta TXT, relative to the zone."""
    return f"{meta_label(target)}.{META}"


def _check_state(mirror: MirrorRecord) -> MirrorRecord:
    if mirror.state not in STATES:
        raise _bad(f"mirror {mirror.label!r} has unknown state {mirror.state!r}")
    return mirror


def meta_rrset(mirror: MirrorRecord, ttl: int) -> RecordSet:
    _check_state(mirror)
    value = txt_value(
        [
            ("txtvers", SCHEMA_VERSION),
            ("serial", mirror.serial),
            ("ts", mirror.ts),
            ("chk", mirror.chk),
            ("st", mirror.state),
            ("url", mirror.url),
        ]
    )
    return RecordSet(f"{check_label(mirror.label)}.{META}", "TXT", ttl, (value,))  # = meta_name


def _srv_value(mirror: MirrorRecord) -> str:
    numbers = (mirror.weight, mirror.port)
    if any(isinstance(n, bool) or not isinstance(n, int) for n in numbers) or not (
        0 <= mirror.weight <= 65535 and 1 <= mirror.port <= 65535
    ):
        raise _bad(f"mirror {mirror.label!r}: weight 0-65535 and port 1-65535")
    target = mirror.target.rstrip(".")
    for part in target.split("."):
        check_label(part, f"mirror {mirror.label!r} target part")
    return f"{PRIORITY[mirror.state]} {mirror.weight} {mirror.port} {target}."


def srv_rrsets(
    mirrors: Sequence[MirrorRecord], ttl: int, limit: int = MAIN_SRV_LIMIT
) -> list[RecordSet]:
    """The main name gets the best `limit` mirrors; each region name lists its own."""
    listed = sorted(
        (m for m in map(_check_state, mirrors) if m.state != "down"),
        key=lambda m: (PRIORITY[m.state], -m.weight, m.label),
    )
    sets = [RecordSet(SERVICE, "SRV", ttl, tuple(sorted(_srv_value(m) for m in listed[:limit])))]
    regions: dict[str, list[MirrorRecord]] = {}
    for mirror in listed:
        if mirror.region:
            regions.setdefault(check_label(mirror.region, "region"), []).append(mirror)
    for region, members in sorted(regions.items()):
        if len(members) > MAX_RRSET:
            raise _bad(f"region {region!r} has {len(members)} mirrors; a set holds {MAX_RRSET}")
        values = tuple(sorted(_srv_value(m) for m in members))
        sets.append(RecordSet(f"{SERVICE}.{region}", "SRV", ttl, values))
    return [s for s in sets if s.values]


def owner_rrset(owner: str, ttl: int) -> RecordSet:
    return RecordSet(
        OWNER, "TXT", ttl, (txt_value([("txtvers", SCHEMA_VERSION), ("owner", owner)]),)
    )


def desired_records(
    zone: str,
    head: RecordSet,
    mirrors: Sequence[MirrorRecord],
    owner: str,
    ttl: int = 60,
) -> list[RecordSet]:
    """Everything mirrorfleet owns in the zone, validated as real DNS records."""
    labels = [m.label for m in mirrors]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise _bad(f"duplicate mirror labels: {', '.join(duplicates)}")
    targets = [m.target.rstrip(".") for m in mirrors]
    if len(set(targets)) != len(targets):
        raise _bad("two mirrors share one target host")
    sets = [owner_rrset(owner, ttl), head, *srv_rrsets(mirrors, ttl)]
    sets += [meta_rrset(m, ttl) for m in mirrors]
    for mirror in mirrors:
        if meta_label(mirror.target) != mirror.label:
            raise _bad(
                f"mirror {mirror.label!r}: its label must be the first label of its target "
                f"{mirror.target!r}, which is how clients find its meta record"
            )
    for rrset in sets:
        try:
            rrset.to_dnspython(zone)
        except (dns.exception.DNSException, ValueError) as exc:
            raise _bad(f"{rrset.name} {rrset.rdtype}: {exc}") from None
    return sets
