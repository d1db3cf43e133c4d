"""The client's DNSSEC check against a zone BIND really signs (dnssec-policy, one
ECDSA P-256 CSK): the anchor in every form an operator copies it from proves the
keys and through them the SRV and head answers; a wrong anchor, a stripped or
stale signature and a changed record are each refused as bogus."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.asyncresolver
import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.tsigkeyring
import dns.update
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from dns.rdtypes.ANY.DNSKEY import DNSKEY

from mirrorfleet.client.dnssec import BogusAnswer, TrustAnchor, fetch_zone_keys, validate_answer
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.testing.loopback_dns import LoopbackBind
from mirrorfleet.tree.keys import MONITOR_TSIG

ZONE = "mirrors.test."
SRV = (f"_pkgmirror._tcp.{ZONE}", "SRV")
HEAD = (f"_head._pkgmirror.{ZONE}", "TXT")
SIGNING_TIMEOUT = 10.0
DAY = 86400

Mutation = Callable[[dns.message.Message], None]


@pytest.fixture(scope="module", autouse=True)
def _prerequisites() -> None:
    """Overrides the lab check in conftest.py: loopback BIND needs no lab."""


@pytest.fixture(scope="module")
def bind(tmp_path_factory) -> Iterator[LoopbackBind]:
    """A signed primary holding a head TXT and two SRV records, signatures in place."""
    if shutil.which("named") is None:
        pytest.fail("named is not installed: apt-get install bind9")
    with LoopbackBind(tmp_path_factory.mktemp("bind"), ZONE, dnssec=True) as server:
        keyring = dns.tsigkeyring.from_text({MONITOR_TSIG: server.keys[MONITOR_TSIG]})
        update = dns.update.UpdateMessage(ZONE, keyring=keyring, keyname=MONITOR_TSIG)
        update.replace("_head._pkgmirror", 60, "TXT", '"txtvers=2" "serial=7"')
        update.replace("_pkgmirror._tcp", 60, "SRV", "10 100 80 m1.example.net.")
        update.add("_pkgmirror._tcp", 60, "SRV", "20 100 80 m2.example.net.")
        response = dns.query.tcp(update, "127.0.0.1", port=server.primary.port, timeout=5)
        assert response.rcode() == 0, response
        for name, rdtype in [(ZONE, "DNSKEY"), SRV, HEAD]:
            wait_signed(server, name, rdtype)
        yield server


def wait_signed(server: LoopbackBind, name: str, rdtype: str) -> None:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    deadline = time.monotonic() + SIGNING_TIMEOUT
    while time.monotonic() < deadline:
        response = dns.query.tcp(query, "127.0.0.1", port=server.primary.port, timeout=2)
        if any(rrset.rdtype == dns.rdatatype.RRSIG for rrset in response.answer):
            return
        time.sleep(0.1)
    pytest.fail(
        f"BIND did not sign {name} {rdtype} in {SIGNING_TIMEOUT}s: {server.tail(server.primary)}"
    )


def resolver(bind: LoopbackBind) -> dns.asyncresolver.Resolver:
    """As discovery builds it: EDNS without DO; fetch_zone_keys must turn DO on."""
    result = dns.asyncresolver.Resolver(configure=False)
    result.nameservers, result.port = ["127.0.0.1"], bind.primary.port
    result.use_edns(0, 0, 1232)
    result.timeout, result.lifetime = 1.0, 3.0
    return result


def key_file(bind: LoopbackBind) -> Path:
    files = sorted((bind.workdir / "primary" / "keys").glob(f"K{ZONE}+013+*.key"))
    assert len(files) == 1, f"expected one CSK, found {files}"
    return files[0]


def zone_key(bind: LoopbackBind) -> DNSKEY:
    (key,) = TrustAnchor.from_file(key_file(bind)).records
    assert isinstance(key, DNSKEY)
    return key


def ds_text(bind: LoopbackBind, digest: str) -> str:
    """SHA-1 DS records are still out there; dnspython validates but will not make them."""
    policy = dns.dnssec.allow_all_policy
    return f"{ZONE} DS {dns.dnssec.make_ds(ZONE, zone_key(bind), digest, policy=policy).to_text()}"


def fresh_key() -> DNSKEY:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    return dns.dnssec.make_dnskey(public, "ECDSAP256SHA256", flags=257)


def fresh_key_text() -> str:
    return f"{ZONE} 300 IN DNSKEY {fresh_key().to_text()}"


def run(*argv: str) -> str:
    if shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (it comes with BIND's tools)")
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10).stdout


def anchor_from(bind: LoopbackBind, form: str, tmp_path: Path) -> TrustAnchor:
    if form == "key-file":
        return TrustAnchor.from_file(key_file(bind))
    if form == "dnssec-dsfromkey":
        return TrustAnchor.from_text(run("dnssec-dsfromkey", "-2", str(key_file(bind))))
    if form == "dig-dnskey":
        port = str(bind.primary.port)
        return TrustAnchor.from_text(
            run("dig", "-p", port, "@127.0.0.1", ZONE, "DNSKEY", "+noall", "+answer")
        )
    if form in ("SHA256", "SHA384", "SHA1"):
        return TrustAnchor.from_text(ds_text(bind, form))
    assert form == "rollover-file"  # a retired key and the new DS, with both comment styles
    path = tmp_path / "anchor"
    path.write_text(
        f"# pinned for {ZONE}\n{fresh_key_text()} ; retired\n\n{ds_text(bind, 'SHA256')}\n"
    )
    return TrustAnchor.from_file(path)


async def resolve(bind: LoopbackBind, anchor: TrustAnchor, name: str, rdtype: str):
    res = resolver(bind)
    keys = await fetch_zone_keys(res, ZONE, anchor)
    assert res.ednsflags & dns.flags.DO
    return keys, await res.resolve(name, rdtype, search=False)


def signed_answer(bind: LoopbackBind, name: str, rdtype: str):
    anchor = TrustAnchor.from_file(key_file(bind))
    return asyncio.run(resolve(bind, anchor, name, rdtype))


@pytest.mark.parametrize(
    "form",
    ["key-file", "dnssec-dsfromkey", "dig-dnskey", "SHA256", "SHA384", "SHA1", "rollover-file"],
)
@pytest.mark.parametrize(("name", "rdtype"), [SRV, HEAD], ids=["srv", "head"])
def test_an_anchor_proves_the_keys_and_they_prove_the_answers(
    bind, tmp_path: Path, form: str, name: str, rdtype: str
) -> None:
    anchor = anchor_from(bind, form, tmp_path)
    keys, answer = asyncio.run(resolve(bind, anchor, name, rdtype))
    assert zone_key(bind) in keys
    assert len(answer) == (2 if rdtype == "SRV" else 1)
    validate_answer(answer, keys, ZONE)  # no BogusAnswer


def flipped_ds(bind: LoopbackBind) -> str:
    ds = dns.dnssec.make_ds(ZONE, zone_key(bind), "SHA256")
    digest = bytearray(ds.digest)
    digest[-1] ^= 0x01
    return f"{ZONE} DS {ds.key_tag} {ds.algorithm} {ds.digest_type} {digest.hex()}"


@pytest.mark.parametrize(
    "anchor_text",
    [lambda bind: fresh_key_text(), flipped_ds],
    ids=["fresh-ec-key", "ds-digest-flipped"],
)
def test_a_wrong_anchor_is_bogus(bind, anchor_text) -> None:
    anchor = TrustAnchor.from_text(anchor_text(bind))
    with pytest.raises(BogusAnswer, match="no DNSKEY matches the trust anchor"):
        asyncio.run(fetch_zone_keys(resolver(bind), ZONE, anchor))


def test_an_anchor_for_another_zone_is_refused(bind) -> None:
    anchor = TrustAnchor.from_text(fresh_key_text().replace(ZONE, "other.test.", 1))
    with pytest.raises(MirrorfleetError, match=r"trust anchor is for other\.test\."):
        asyncio.run(fetch_zone_keys(resolver(bind), ZONE, anchor))


def copy_with(answer: dns.resolver.Answer, mutate: Mutation) -> dns.resolver.Answer:
    """The answer as dnspython would build it had `mutate` happened on the wire
    (re-read, since a Message's lookup index does not follow edited sections)."""
    response = dns.message.from_wire(answer.response.to_wire())
    mutate(response)
    response = dns.message.from_wire(response.to_wire())
    return dns.resolver.Answer(response.question[0].name, answer.rdtype, answer.rdclass, response)


def strip_rrsigs(message: dns.message.Message) -> None:
    message.answer = [r for r in message.answer if r.rdtype != dns.rdatatype.RRSIG]


def add_key(message: dns.message.Message) -> None:
    """An attacker's key slipped in next to the anchored one."""
    (keys,) = [r for r in message.answer if r.rdtype == dns.rdatatype.DNSKEY]
    keys.add(fresh_key())


def change_port(message: dns.message.Message) -> None:
    (srv,) = [r for r in message.answer if r.rdtype == dns.rdatatype.SRV]
    first = min(srv, key=lambda rdata: rdata.priority)
    srv.discard(first)
    srv.add(first.replace(port=8080))


def drop_a_mirror(message: dns.message.Message) -> None:
    (srv,) = [r for r in message.answer if r.rdtype == dns.rdatatype.SRV]
    srv.discard(max(srv, key=lambda rdata: rdata.priority))


def untouched(message: dns.message.Message) -> None:
    pass


class Forging(dns.asyncresolver.Resolver):
    """A resolver on the path that changes every response before the client sees it."""

    def __init__(self, inner: dns.asyncresolver.Resolver, mutate: Mutation) -> None:
        super().__init__(configure=False)
        self.nameservers, self.port = inner.nameservers, inner.port
        self.timeout, self.lifetime = inner.timeout, inner.lifetime
        self.use_edns(inner.edns, inner.ednsflags, inner.payload)
        self.mutate = mutate

    async def resolve(self, *args, **kwargs):  # type: ignore[override]
        return copy_with(await super().resolve(*args, **kwargs), self.mutate)


@pytest.mark.parametrize(
    ("mutate", "now", "problem"),
    [
        (strip_rrsigs, None, "unsigned"),
        (add_key, None, "bad signature .*verify failure"),
        (untouched, time.time() + 30 * DAY, "bad signature .*expired"),
    ],
    ids=["rrsig-stripped", "extra-key", "expired"],
)
def test_a_dnskey_set_the_anchor_did_not_sign_is_bogus(
    bind, mutate: Mutation, now: float | None, problem: str
) -> None:
    anchor = TrustAnchor.from_file(key_file(bind))
    forging = Forging(resolver(bind), mutate)
    with pytest.raises(BogusAnswer, match=problem):
        asyncio.run(fetch_zone_keys(forging, ZONE, anchor, now=now))


@pytest.mark.parametrize(
    ("record", "mutate", "now", "problem"),
    [
        (SRV, untouched, None, None),
        (HEAD, untouched, None, None),
        (SRV, strip_rrsigs, None, "unsigned"),
        (HEAD, strip_rrsigs, None, "unsigned"),
        (SRV, change_port, None, "bad signature .*verify failure"),
        (SRV, drop_a_mirror, None, "bad signature .*verify failure"),
        (HEAD, untouched, time.time() + 30 * DAY, "bad signature .*expired"),
        (SRV, untouched, 1.0, "bad signature .*not yet valid"),
    ],
    ids=[
        "srv-as-sent",
        "head-as-sent",
        "srv-rrsig-stripped",
        "head-rrsig-stripped",
        "srv-port-changed",
        "srv-mirror-dropped",
        "head-expired",
        "srv-not-yet-valid",
    ],
)
def test_a_changed_or_unsigned_answer_is_bogus(
    bind, record: tuple[str, str], mutate: Mutation, now: float | None, problem: str | None
) -> None:
    keys, answer = signed_answer(bind, *record)
    forged = copy_with(answer, mutate)
    if problem is None:
        validate_answer(forged, keys, ZONE, now=now)
    else:
        with pytest.raises(BogusAnswer, match=problem):
            validate_answer(forged, keys, ZONE, now=now)


def through_an_alias(message: dns.message.Message) -> None:
    alias = dns.name.from_text(f"alias.{ZONE}")
    message.question = [dns.rrset.RRset(alias, dns.rdataclass.IN, dns.rdatatype.SRV)]
    message.answer.insert(0, dns.rrset.from_text(alias, 60, "IN", "CNAME", SRV[0]))


def test_an_answer_reached_through_a_cname_is_refused(bind) -> None:
    keys, answer = signed_answer(bind, *SRV)
    chained = copy_with(answer, through_an_alias)
    assert chained.canonical_name == dns.name.from_text(SRV[0]) and len(chained) == 2
    with pytest.raises(BogusAnswer, match="CNAME"):
        validate_answer(chained, keys, ZONE)


KEY_B64 = "kkT03o2pY2K524r6aJjP+A69Uz2ekrWYUoChK9mPWN11pDX3UpAIMwR+mNhsA+zYKUhJpMO5PPnn4q3EKQKgRw=="


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "no DS or DNSKEY record"),
        ("; only a comment\n# and another\n", "no DS or DNSKEY record"),
        ("garbage", "not a DS or DNSKEY record"),
        ("mirrors.test. DS 42246 13 2 zz", "not a DS or DNSKEY record"),
        ("mirrors.test. DS 42246 13 2 ABCD", "digest length inconsistent"),
        ("mirrors.test. DS 42246 13 3 " + "AB" * 32, "digest type 3 is not supported"),
        ("mirrors.test. DNSKEY 257 3 13 !!!notbase64", "not a DS or DNSKEY record"),
        (f"mirrors.test. DNSKEY 0 3 13 {KEY_B64}", "not a zone key"),
        ("mirrors.test. A 192.0.2.1", "a A record, not DS or DNSKEY"),
        (
            f"mirrors.test. DNSKEY 257 3 13 {KEY_B64}\nother.test. DNSKEY 257 3 13 {KEY_B64}",
            "several zones",
        ),
    ],
    ids=[
        "empty",
        "comments-only",
        "garbage",
        "ds-not-hex",
        "ds-short-digest",
        "ds-gost",
        "dnskey-not-base64",
        "dnskey-not-zone-key",
        "a-record",
        "two-zones",
    ],
)
def test_a_bad_anchor_is_one_line(text: str, problem: str) -> None:
    with pytest.raises(MirrorfleetError, match=problem) as caught:
        TrustAnchor.from_text(text)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("trust anchor")


def test_an_unreadable_anchor_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(
        MirrorfleetError, match=re.escape(f"{tmp_path / 'missing'}: cannot read it")
    ):
        TrustAnchor.from_file(tmp_path / "missing")
