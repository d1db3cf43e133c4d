"""Zone updates on an authoritative server with RFC 2136 dynamic updates and TSIG.

Live state comes from a TSIG-signed AXFR; a whole plan goes out as one update
message whose prerequisite is our ownership marker, so a zone update is atomic and never
writes into a zone another fleet owns. The server's `update-policy`
(`update_policy()` below, used by the BIND role and the tests) limits the key to
mirrorfleet's names: even a buggy writer cannot touch anything else.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import dns.exception
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import dns.zone

from mirrorfleet.config import DnsConfig
from mirrorfleet.errors import UserError
from mirrorfleet.zone.plan import Plan
from mirrorfleet.zone.providers.base import Provider
from mirrorfleet.zone.records import HEAD, META, OWNER, SERVICE, RecordSet

# A DNS message over TCP is at most 65,535 bytes; keep room for header, zone,
# prerequisite and the TSIG record.
MESSAGE_BUDGET = 60_000
REFUSAL_HINTS = {
    dns.rcode.NXRRSET: "the zone's ownership marker is not ours",
    dns.rcode.YXDOMAIN: "another fleet already owns these names",
    dns.rcode.REFUSED: "the server's update-policy does not allow it",
    dns.rcode.NOTAUTH: "the key is not accepted",
}


@dataclass(frozen=True)
class Rfc2136Provider(Provider):
    """A zone on a server that takes RFC 2136 updates signed with a TSIG key."""

    zone: str
    server: str
    key_name: str
    key_secret: str  # base64, as in a BIND key statement
    port: int = 53
    algorithm: str = "hmac-sha256"
    timeout: float = 5.0

    @property
    def keyring(self) -> dict:
        return dns.tsigkeyring.from_text({self.key_name: (self.algorithm, self.key_secret)})

    @property
    def origin(self) -> dns.name.Name:
        return dns.name.from_text(self.zone)

    def describe(self) -> str:
        return f"{self.server}:{self.port} (RFC 2136, key {self.key_name})"

    def read_live(self) -> list[RecordSet]:
        """Every record set in the zone, by AXFR signed with our key.

        Owner names come back relative to the zone, names inside values absolute,
        exactly as records.py writes them (an SRV target inside the zone stays
        `mirror1.zone.`, so it compares equal to what we want)."""
        try:
            zone = dns.zone.from_xfr(
                dns.query.xfr(
                    self.server,
                    self.origin,
                    port=self.port,
                    keyring=self.keyring,
                    keyname=self.key_name,
                    lifetime=self.timeout,
                    relativize=False,
                ),
                relativize=False,
            )
        except (dns.exception.DNSException, OSError) as exc:
            raise UserError(
                f"zone transfer of {self.zone} from {self.server}:{self.port} failed: {exc}"
            ) from None
        return [
            RecordSet(
                name.relativize(self.origin).to_text(),
                dns.rdatatype.to_text(rdataset.rdtype),
                rdataset.ttl,
                tuple(sorted(rdata.to_text() for rdata in rdataset)),
            )
            for name, rdataset in zone.iterate_rdatasets()
        ]

    def apply(self, plan: Plan, owner: RecordSet, owner_is_live: bool) -> int:
        """Send the plan in as few update messages as fit; return how many were sent.

        A routine zone update is one message. A plan too big for one DNS message (the first
        zone update of a large fleet) goes out in several, each conditional on our
        marker and ordered so SRV never names a mirror whose meta is not there yet.
        """
        if plan.empty:
            return 0
        for n, batch in enumerate(pack(plan, owner, self.origin)):
            update = dns.update.UpdateMessage(
                self.origin, keyring=self.keyring, keyname=self.key_name
            )
            if owner_is_live or n > 0:
                update.present(owner.name, dns.rdata.from_text("IN", "TXT", owner.values[0]))
            else:
                update.absent(owner.name)  # first zone update: nobody may own these names yet
            for delete, rrset in batch:
                if delete:
                    update.delete(rrset.name, rrset.rdtype)
                else:
                    update.replace(rrset.name, rrset.ttl, rrset.rdtype, *rrset.values)
            self._send(update)
        return n + 1

    def _send(self, update: dns.update.UpdateMessage) -> None:
        try:
            response = dns.query.tcp(update, self.server, port=self.port, timeout=self.timeout)
        except (dns.exception.DNSException, OSError) as exc:
            raise UserError(f"update to {self.server}:{self.port} failed: {exc}") from None
        rcode = response.rcode()
        if rcode != dns.rcode.NOERROR:
            hint = REFUSAL_HINTS.get(rcode, "")
            raise UserError(
                f"update refused by {self.server}: {dns.rcode.to_text(rcode)}"
                + (f" ({hint})" if hint else "")
            )


def pack(
    plan: Plan, owner: RecordSet, origin: dns.name.Name, budget: int = MESSAGE_BUDGET
) -> list[list[tuple[bool, RecordSet]]]:
    """The plan's changes as (delete?, rrset) batches that each fit one message.

    Order: our marker, then TXT (head, meta), then SRV, then deletes, so a reader
    between two messages never sees an SRV target without its meta record.
    """
    writes = sorted(
        [d for _, d in plan.updates] + plan.creates,
        key=lambda r: (r.name != owner.name, r.rdtype == "SRV"),
    )
    changes = [(False, r) for r in writes] + [(True, r) for r in plan.deletes]
    batches: list[list[tuple[bool, RecordSet]]] = [[]]
    used = 0
    for delete, rrset in changes:
        size = _wire_size(rrset, origin, delete)
        if size > budget:
            raise UserError(f"{rrset.name} {rrset.rdtype} alone is over {budget} bytes")
        if used + size > budget and batches[-1]:
            batches.append([])
            used = 0
        batches[-1].append((delete, rrset))
        used += size
    return batches


def _wire_size(rrset: RecordSet, origin: dns.name.Name, delete: bool) -> int:
    """Bytes the change adds to an update message (uncompressed: an upper bound)."""
    name = len(dns.name.from_text(rrset.name, origin=origin).to_wire())
    if delete:
        return name + 10
    wire = io.BytesIO()
    rrset.to_dnspython(origin.to_text()).to_wire(wire, compress=None, origin=origin)
    return len(wire.getvalue()) + name + 10  # replace = delete the set + add its records


def from_config(config: DnsConfig) -> Rfc2136Provider:
    try:
        secret = config.key_file.read_text().strip()
    except OSError as exc:
        raise UserError(f"cannot read TSIG key {config.key_file}: {exc.strerror}") from None
    return Rfc2136Provider(config.zone, config.server, config.key_name, secret, port=config.port)


def update_policy(zone: str, key_name: str, regions: Iterable[str] = ()) -> list[str]:
    """BIND update-policy rules granting the zone-update key exactly schema v1's names.

    BIND wildcards only lead a name, so each region's SRV name gets its own rule.
    """
    zone = zone.rstrip(".")
    return [
        f"grant {key_name} name {SERVICE}.{zone}. SRV;",
        *(f"grant {key_name} name {SERVICE}.{r}.{zone}. SRV;" for r in sorted(set(regions))),
        f"grant {key_name} name {HEAD}.{zone}. TXT;",
        f"grant {key_name} name {OWNER}.{zone}. TXT;",
        f"grant {key_name} wildcard *.{META}.{zone}. TXT;",
    ]
