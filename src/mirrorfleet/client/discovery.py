"""Two rounds of parallel DNS queries tell a client everything the monitor knows.

Round one asks for the SRV set and the head TXT at once; round two asks for the
meta TXT of every listed mirror at once, or, for a pick, of the first few in pick
order (the rest only if those fail). Answers come over UDP with a 1,232-byte EDNS
buffer, and over TCP when truncated (dnspython's resolver retries by itself).
The head is only believed when its signature verifies with the pinned key, or with
an online key the pinned roots certify in the keys document the listed mirrors
serve (fetched only when the head names a signer or a document this client does not
hold yet); a malformed or inconsistent meta record costs only that mirror, with a
warning.
With a trust anchor, every answer must also carry a valid DNSSEC signature.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mirrorfleet.client.select import rfc2782_order
from mirrorfleet.errors import UserError
from mirrorfleet.tree.keys import key_id
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.tree.trust import Keyring, KeysUnavailable
from mirrorfleet.zone.records import (
    HEAD,
    SERVICE,
    STATES,
    meta_name,
    parse_txt,
    signed_bytes,
    stamp_from_head,
)

if TYPE_CHECKING:  # the DNSSEC code loads only when a trust anchor is given
    from mirrorfleet.client.dnssec import TrustAnchor

EDNS_PAYLOAD = 1232


class LookupFailed(UserError):
    """DNS could not say which mirrors exist (no SRV, no head, SERVFAIL, timeout)."""


@dataclass(frozen=True)
class Listed:
    """One SRV target, with what its meta record says (None when it could not be read)."""

    target: str
    port: int
    priority: int
    weight: int
    state: str | None = None
    serial: int | None = None
    ts: int | None = None
    chk: int | None = None
    url: str | None = None
    problem: str | None = None  # why this mirror cannot be used


@dataclass(frozen=True)
class Entry:
    """An SRV record: where a mirror is, before its meta record is read."""

    target: str
    port: int
    priority: int
    weight: int


@dataclass(frozen=True)
class Discovery:
    zone: str
    head: Stamp
    mirrors: tuple[Listed, ...]
    warnings: tuple[str, ...] = field(default=())
    pending: tuple[Entry, ...] = ()  # listed in SRV, meta not read yet (in pick order)
    ordered: bool = False  # mirrors are already in RFC 2782 pick order
    ttl: int = 60  # seconds until the SRV set or the head may change (the least TTL)


@dataclass(frozen=True)
class Lookup:
    """Where and how to ask."""

    zone: str
    keys: Sequence[Ed25519PublicKey]
    nameservers: Sequence[str] = ()  # empty: the system's resolvers
    port: int = 53
    region: str | None = None
    timeout: float = 2.0  # per try
    lifetime: float = 5.0  # per name, retries included
    anchor: TrustAnchor | None = None  # validate every answer with DNSSEC

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.from_text(self.zone)

    def resolver(self) -> dns.asyncresolver.Resolver:
        resolver = dns.asyncresolver.Resolver(configure=not self.nameservers)
        if self.nameservers:
            resolver.nameservers = list(self.nameservers)
            resolver.port = self.port
        resolver.use_edns(0, 0, EDNS_PAYLOAD)
        resolver.timeout, resolver.lifetime = self.timeout, self.lifetime
        return resolver


def discover(
    lookup: Lookup, rng: random.Random | None = None, batch: int | None = None
) -> Discovery:
    """Every mirror; or, given an rng, the first `batch` in RFC 2782 pick order, with
    the rest left pending for `read_more` (a pick rarely needs more than a few)."""
    return asyncio.run(discover_async(lookup, rng, batch))


def read_more(lookup: Lookup, found: Discovery, batch: int) -> Discovery:
    """The next `batch` pending mirrors' meta records."""
    return asyncio.run(_read_more(lookup, found, batch))


async def discover_async(
    lookup: Lookup, rng: random.Random | None = None, batch: int | None = None
) -> Discovery:
    resolver = lookup.resolver()
    service = SERVICE if not lookup.region else f"{SERVICE}.{lookup.region}"
    srv_name = dns.name.from_text(service, lookup.origin)
    head_name = dns.name.from_text(HEAD, lookup.origin)
    zone_keys = await _zone_keys(resolver, lookup)
    srv, head = await asyncio.gather(
        _resolve(resolver, srv_name, "SRV"), _resolve(resolver, head_name, "TXT")
    )
    if zone_keys is not None:
        from mirrorfleet.client.dnssec import validate_answer

        for answer in (srv, head):
            try:
                validate_answer(answer, zone_keys, lookup.origin)  # type: ignore[arg-type]
            except UserError as exc:
                raise LookupFailed(f"DNSSEC: {exc}") from None
    signed_head = _read_head(head, head_name)
    warnings: list[str] = []
    entries: dict[str, Entry] = {}
    for rdata in srv:
        target = rdata.target.to_text(omit_final_dot=True).lower()
        if rdata.target == dns.name.root:
            warnings.append(f"{srv_name}: target '.' (no service there): skipped")
        elif target in entries:
            warnings.append(f"{srv_name}: {target} listed twice: the first kept")
        else:
            entries[target] = Entry(target, rdata.port, rdata.priority, rdata.weight)
    # servers rotate the order of an answer; sorting first makes a seed reproducible
    order = sorted(entries.values(), key=lambda e: (e.priority, e.target))
    if rng is not None:
        order = rfc2782_order(order, rng)
    first = order if batch is None else order[:batch]
    mirrors, problems = await _metas(resolver, lookup, first, zone_keys)
    if _needs_keys(signed_head, lookup.keys):
        problems += await asyncio.to_thread(_keys_from_mirrors, lookup, mirrors, signed_head[0])
    stamp = _verified_head(signed_head, head_name, lookup.keys)
    return Discovery(
        lookup.zone,
        stamp,
        mirrors,
        (*warnings, *problems),
        tuple(order[len(first) :]),
        ordered=rng is not None,
        ttl=min(_ttl(srv), _ttl(head)),
    )


async def _read_more(lookup: Lookup, found: Discovery, batch: int) -> Discovery:
    resolver = lookup.resolver()
    zone_keys = await _zone_keys(resolver, lookup)
    more, problems = await _metas(resolver, lookup, found.pending[:batch], zone_keys)
    return replace(
        found,
        mirrors=(*found.mirrors, *more),
        warnings=(*found.warnings, *problems),
        pending=found.pending[batch:],
    )


async def _zone_keys(resolver: dns.asyncresolver.Resolver, lookup: Lookup):
    if lookup.anchor is None:
        return None
    from mirrorfleet.client.dnssec import fetch_zone_keys

    try:
        return await fetch_zone_keys(resolver, lookup.origin, lookup.anchor)
    except UserError as exc:
        raise LookupFailed(f"DNSSEC: {exc}") from None


async def _metas(
    resolver: dns.asyncresolver.Resolver,
    lookup: Lookup,
    entries: Sequence[Entry],
    zone_keys: object,
) -> tuple[tuple[Listed, ...], list[str]]:
    """Each entry's meta record, all at once; a bad one costs that mirror only."""
    answers = await asyncio.gather(
        *(
            _resolve(
                resolver, dns.name.from_text(meta_name(e.target), lookup.origin), "TXT", soft=True
            )
            for e in entries
        )
    )
    mirrors, problems = [], []
    for entry, meta in zip(entries, answers, strict=True):
        if zone_keys is not None and not isinstance(meta, str):
            from mirrorfleet.client.dnssec import validate_answer

            try:
                validate_answer(meta, zone_keys, lookup.origin)  # type: ignore[arg-type]
            except UserError as exc:
                meta = f"DNSSEC: {exc}"
        listed = _listed(entry.target, entry.port, entry.priority, entry.weight, meta)
        if listed.problem:
            problems.append(f"{entry.target}: {listed.problem}: skipped")
        mirrors.append(listed)
    return tuple(mirrors), problems


async def _resolve(
    resolver: dns.asyncresolver.Resolver, name: dns.name.Name, rdtype: str, soft: bool = False
) -> dns.resolver.Answer | str:
    """The answer; for a `soft` lookup a problem string instead of LookupFailed."""
    try:
        return await resolver.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        problem = f"{name} does not exist (NXDOMAIN)"
    except dns.resolver.NoAnswer:
        problem = f"{name} has no {rdtype} record"
    except dns.resolver.NoNameservers as exc:
        problem = f"no server could answer for {name} (SERVFAIL or refused): {exc.msg}"
    except dns.resolver.LifetimeTimeout:
        problem = f"no answer for {name} within the lookup time"
    except dns.exception.DNSException as exc:
        problem = f"{name} {rdtype}: {exc}"
    if soft:
        return problem
    raise LookupFailed(problem)


def _ttl(answer: dns.resolver.Answer | str) -> int:
    rrset = getattr(answer, "rrset", None)
    return rrset.ttl if rrset is not None else 60


SignedHead = tuple[Stamp, bytes, str]  # the stamp, its signature, the signer's key id


def _read_head(answer: dns.resolver.Answer | str, name: dns.name.Name) -> SignedHead:
    """The head as it reads, before its signature is checked."""
    assert not isinstance(answer, str)  # a hard lookup raises instead
    if len(answer) != 1:
        raise LookupFailed(f"{name} has {len(answer)} TXT records, not 1")
    try:
        return stamp_from_head(parse_txt(answer[0].strings))
    except UserError as exc:
        raise LookupFailed(f"{name}: {exc}") from None


def _needs_keys(head: SignedHead, keys: Sequence[Ed25519PublicKey]) -> bool:
    """With pinned roots (a Keyring): the head's signer is not trusted yet (a
    rotation), or it names a newer keys document (maybe a revocation)."""
    if not isinstance(keys, Keyring):
        return False
    stamp, _signature, kid = head
    return stamp.keys > keys.version or kid not in {key_id(k) for k in keys}


def _keys_from_mirrors(lookup: Lookup, mirrors: Sequence[Listed], head: Stamp) -> list[str]:
    """The keys document from the first listed mirror that serves one at least as new
    as the head names; what went wrong on the way, as warnings. Any mirror will do:
    the document is checked against the pinned roots, whoever serves it."""
    keys = lookup.keys
    assert isinstance(keys, Keyring)
    problems = []
    for mirror in mirrors:
        if mirror.url is None or mirror.problem:
            continue
        try:
            keys.refresh(mirror.url, 2 * lookup.timeout)
        except (KeysUnavailable, BadSignature) as exc:
            problems.append(f"{mirror.target}: {exc}")
            continue
        if keys.version >= head.keys:
            break
    return problems


def _verified_head(
    head: SignedHead, name: dns.name.Name, keys: Sequence[Ed25519PublicKey]
) -> Stamp:
    stamp, signature, kid = head
    for key in keys:
        if key_id(key) == kid:
            try:
                key.verify(signature, signed_bytes(stamp))
            except InvalidSignature:
                break
            return stamp
    why = keys.why_refused(kid, int(time.time())) if isinstance(keys, Keyring) else None
    raise LookupFailed(
        f"{name}: the head's signature does not verify with the pinned key"
        + (f" ({why})" if why else "")
    )


def _listed(
    target: str, port: int, priority: int, weight: int, meta: dns.resolver.Answer | str
) -> Listed:
    base = Listed(target, port, priority, weight)
    if isinstance(meta, str):
        return _with_problem(base, meta)
    if len(meta) != 1:
        return _with_problem(base, f"{len(meta)} meta records, not 1")
    try:
        fields = parse_txt(meta[0].strings)
        state, url = fields["st"], fields["url"]
        serial, ts, chk = int(fields["serial"]), int(fields["ts"]), int(fields["chk"])
    except (UserError, KeyError, ValueError) as exc:
        return _with_problem(base, f"malformed meta record ({exc})")
    if state not in STATES:
        return _with_problem(base, f"unknown state {state!r}")
    if urlparse(url).scheme not in ("http", "https") or not urlparse(url).hostname:
        return _with_problem(base, f"meta url {url!r} is not an http(s) URL")
    return Listed(target, port, priority, weight, state, serial, ts, chk, url)


def _with_problem(listed: Listed, problem: str) -> Listed:
    return Listed(listed.target, listed.port, listed.priority, listed.weight, problem=problem)
