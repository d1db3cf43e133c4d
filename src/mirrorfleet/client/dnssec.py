"""Optional DNSSEC validation of the mirror list, against a configured trust anchor.

Why: the head TXT is signed by the origin's own key, but the SRV set and the meta
records are not; an on-path attacker can drop mirrors from the list or point a
client at a mirror the operator retired. With a trust anchor for the zone (its
DS or its key-signing DNSKEY, pinned like the head key) the client checks every
answer itself and needs nothing from the resolver but the records and their
RRSIGs; a resolver that strips them makes every lookup fail, never pass.

Steps: `fetch_zone_keys` once per lookup (the zone's DNSKEY set, proven by the
anchor), then `validate_answer` for every positive answer. All cryptography is
dnspython's `dns.dnssec`.

Out of scope, on purpose:
- negative answers (NXDOMAIN, NODATA): they are not authenticated (no NSEC/NSEC3
  proofs are checked), so a forged "does not exist" still reads as a lookup
  failure; it can deny service but never steer the client to a wrong mirror;
- CNAME/DNAME chains and wildcard-synthesised answers: our names have none, so
  such an answer is refused rather than half-validated;
- a chain of trust from the root: the anchor is configured for our zone itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import dns.asyncresolver
import dns.dnssec
import dns.exception
import dns.flags
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.zonefile
from dns.rdtypes.ANY.DNSKEY import DNSKEY
from dns.rdtypes.ANY.DS import DS
from dns.rdtypes.ANY.RRSIG import RRSIG

from mirrorfleet.errors import UserError

EDNS_PAYLOAD = 1232
DIGEST_TYPES = (1, 2, 4)  # SHA-1, SHA-256, SHA-384: what make_ds computes
_HASH_COMMENT = re.compile(r"(?<!\\)#.*$", re.MULTILINE)  # `\#` is RFC 3597 syntax

Zone = dns.name.Name | str


class BogusAnswer(UserError):
    """An answer that should carry a valid signature from the anchored zone and does not."""


@dataclass(frozen=True)
class TrustAnchor:
    """The DS and/or DNSKEY records pinned for one zone; one match is enough,
    so during a key rollover the old and the new anchor may both be listed."""

    zone: dns.name.Name
    records: tuple[DS | DNSKEY, ...]

    @classmethod
    def from_text(cls, text: str) -> TrustAnchor:
        """`<zone> [ttl] [IN] DS|DNSKEY <rdata>` lines, as dnssec-dsfromkey, a
        K*.key file or `dig DNSKEY` print them; `;` and `#` start comments."""
        try:
            rrsets = dns.zonefile.read_rrsets(
                _HASH_COMMENT.sub("", text), rdclass=None, default_ttl=0
            )
        except dns.exception.DNSException as exc:
            raise UserError(
                _one_line(f"trust anchor is not a DS or DNSKEY record: {exc}")
            ) from None
        if not rrsets:
            raise UserError("trust anchor: no DS or DNSKEY record found")
        zones = {rrset.name for rrset in rrsets}
        if len(zones) != 1:
            names = ", ".join(sorted(z.to_text() for z in zones))
            raise UserError(f"trust anchor: records for several zones ({names})")
        records: list[DS | DNSKEY] = []
        for rrset in rrsets:
            for rdata in rrset:
                records.append(_checked(rrset.name, rdata))
        return cls(zones.pop(), tuple(records))

    @classmethod
    def from_file(cls, path: Path | str) -> TrustAnchor:
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"trust anchor {path}: cannot read it ({exc})") from None
        try:
            return cls.from_text(text)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None

    def matches(self, key: DNSKEY) -> bool:
        """Is this DNSKEY (owned by the anchor's zone) one of the anchored keys?"""
        for anchor in self.records:
            if isinstance(anchor, DNSKEY):
                if anchor == key:
                    return True
            elif (anchor.key_tag, anchor.algorithm) == (dns.dnssec.key_id(key), key.algorithm):
                ds = dns.dnssec.make_ds(self.zone, key, anchor.digest_type, validating=True)
                if ds == anchor:
                    return True
        return False


def _checked(zone: dns.name.Name, rdata: object) -> DS | DNSKEY:
    """Refuse at load time what could never match, so a typo is not a later 'bogus'.
    (dnspython itself refuses a DS digest whose length does not fit its type.)"""
    if isinstance(rdata, DS):
        if rdata.digest_type not in DIGEST_TYPES:
            raise UserError(
                f"trust anchor {zone}: DS digest type {rdata.digest_type} is not supported "
                "(use 2, SHA-256)"
            )
        return rdata
    if isinstance(rdata, DNSKEY):
        if not rdata.flags & dns.dnssec.Flag.ZONE or rdata.protocol != 3:
            raise UserError(f"trust anchor {zone}: the DNSKEY is not a zone key")
        return rdata
    kind = dns.rdatatype.to_text(getattr(rdata, "rdtype", 0))
    raise UserError(f"trust anchor {zone}: a {kind} record, not DS or DNSKEY")


def want_dnssec(resolver: dns.resolver.BaseResolver) -> None:
    """Set the EDNS DO bit, without which servers send no RRSIGs; keeps a larger
    buffer the caller chose (signed answers are bigger, TCP takes the rest)."""
    if resolver.edns >= 0 and resolver.ednsflags & dns.flags.DO:
        return
    payload = max(resolver.payload, EDNS_PAYLOAD) if resolver.edns >= 0 else EDNS_PAYLOAD
    flags = resolver.ednsflags if resolver.edns >= 0 else 0
    resolver.use_edns(0, flags | dns.flags.DO, payload, resolver.ednsoptions)


async def fetch_zone_keys(
    resolver: dns.asyncresolver.Resolver,
    zone: Zone,
    anchors: TrustAnchor,
    *,
    now: float | None = None,
) -> dns.rrset.RRset:
    """The zone's DNSKEY RecordSet, once an anchored key is in it and has signed it.

    Turns on DO on `resolver` (see `want_dnssec`); use that resolver for the
    answers to validate. Raises BogusAnswer when the keys cannot be trusted,
    UserError when they cannot be fetched at all.
    """
    origin = _absolute(zone)
    if anchors.zone != origin:
        raise UserError(f"the trust anchor is for {anchors.zone}, not {origin}")
    want_dnssec(resolver)
    try:
        answer = await resolver.resolve(origin, "DNSKEY", search=False, raise_on_no_answer=True)
    except dns.resolver.NoAnswer:
        raise BogusAnswer(f"{origin} has no DNSKEY record: the zone is not signed") from None
    except dns.exception.DNSException as exc:
        raise UserError(_one_line(f"{origin} DNSKEY lookup failed: {exc}")) from None
    keys = _rrset(answer, origin)
    anchored = [key for key in keys if isinstance(key, DNSKEY) and anchors.matches(key)]
    if not anchored:
        raise BogusAnswer(f"{origin}: no DNSKEY matches the trust anchor")
    trusted = dns.rrset.from_rdata_list(origin, keys.ttl, anchored)
    _verify(keys, _rrsigs(answer, keys), trusted, origin, now)
    return keys


def validate_answer(
    answer: dns.resolver.Answer,
    keys: dns.rrset.RRset,
    zone: Zone,
    *,
    now: float | None = None,
) -> None:
    """Raise BogusAnswer unless the answer's RecordSet is signed by one of the zone's
    `keys` (from fetch_zone_keys) with a signature valid now."""
    origin = _absolute(zone)
    rrset = _rrset(answer, origin)
    _verify(rrset, _rrsigs(answer, rrset), keys, origin, now)


def _absolute(zone: Zone) -> dns.name.Name:
    return dns.name.from_text(zone) if isinstance(zone, str) else zone


def _rrset(answer: dns.resolver.Answer, origin: dns.name.Name) -> dns.rrset.RRset:
    if answer.rrset is None:
        raise BogusAnswer(f"{answer.qname}: no records to validate (negative answer)")
    if answer.canonical_name != answer.qname or answer.rrset.name != answer.qname:
        raise BogusAnswer(f"{answer.qname}: reached through a CNAME/DNAME, not validated")
    if not answer.qname.is_subdomain(origin):
        raise BogusAnswer(f"{answer.qname} is outside {origin}")
    return answer.rrset


def _rrsigs(answer: dns.resolver.Answer, rrset: dns.rrset.RRset) -> list[RRSIG]:
    """The RRSIGs over `rrset`, read from the section itself: Message.find_rrset
    answers from an index that goes stale when a section list is edited."""
    rrsigs = [
        rrsig
        for found in answer.response.answer
        if found.rdtype == dns.rdatatype.RRSIG
        and found.covers == rrset.rdtype
        and found.name == rrset.name
        and found.rdclass == rrset.rdclass
        for rrsig in found
    ]
    if not rrsigs:
        kind = dns.rdatatype.to_text(rrset.rdtype)
        raise BogusAnswer(f"{rrset.name} {kind}: unsigned (no RRSIG; does the resolver strip it?)")
    return rrsigs


def _verify(
    rrset: dns.rrset.RRset,
    rrsigs: Iterable[RRSIG],
    keys: dns.rrset.RRset,
    origin: dns.name.Name,
    now: float | None,
) -> None:
    """One RRSIG must verify. Each is tried on its own (dnspython's validate()
    reports only 'no RRSIGs validated'), so the error can say why each failed."""
    kind = dns.rdatatype.to_text(rrset.rdtype)
    reasons = []
    for rrsig in rrsigs:
        if rrsig.labels < len(rrset.name) - 1:
            reasons.append("wildcard-synthesised")  # needs an NSEC proof we do not check
            continue
        try:
            dns.dnssec.validate_rrsig(rrset, rrsig, {origin: keys}, now=now)
            return
        except (dns.dnssec.ValidationFailure, dns.dnssec.UnsupportedAlgorithm) as exc:
            reasons.append(f"key {rrsig.key_tag}: {exc or type(exc).__name__}")
    raise BogusAnswer(f"{rrset.name} {kind}: bad signature ({'; '.join(reasons)})")


def _one_line(text: str) -> str:
    return " ".join(text.split())
