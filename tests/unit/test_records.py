"""DNS record schema v1: shapes, limits, hostile input, and a head record a client
can verify with nothing but the origin's public key."""

from __future__ import annotations

import base64
import json

import dns.message
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.tree.keys import key_id
from mirrorfleet.tree.stamp import Stamp
from mirrorfleet.zone import records
from mirrorfleet.zone.records import MirrorRecord

ZONE = "mirrors.example.org."
KEY = Ed25519PrivateKey.generate()


def mirror(i: int, state: str = "fresh", **changes) -> MirrorRecord:
    base = {
        "label": f"mirror{i}",
        "target": f"mirror{i}.example.net",
        "state": state,
        "serial": 10,
        "ts": 1_700_000_000,
        "chk": 1_700_000_100,
        "url": f"http://mirror{i}.example.net/",
        "weight": 100 + i,
    }
    return MirrorRecord(**{**base, **changes})


def head() -> records.RecordSet:
    stamp = Stamp(serial=10, ts=1_700_000_000, origin="origin", expires=2**32)
    signature = base64.b64decode(json.loads(stamp.sign(KEY))["sig"])
    return records.head_rrset(stamp, signature, key_id(KEY.public_key()), ttl=60)


def test_head_record_verifies_with_the_public_key_alone() -> None:
    rrset = head().to_dnspython(ZONE)
    fields = records.parse_txt(next(iter(rrset)).strings)
    stamp, signature, kid = records.stamp_from_head(fields)
    assert kid == key_id(KEY.public_key())
    KEY.public_key().verify(signature, records.signed_bytes(stamp))  # raises if wrong
    assert stamp.serial == 10


def test_desired_records_shape() -> None:
    sets = records.desired_records(
        ZONE, head(), [mirror(1), mirror(2, "lagging"), mirror(3, "down")], owner="fleet-a"
    )
    by_name = {(s.name, s.rdtype): s for s in sets}
    srv = by_name[("_pkgmirror._tcp", "SRV")]
    assert srv.values == ("10 101 80 mirror1.example.net.", "20 102 80 mirror2.example.net.")
    meta3 = by_name[("mirror3._meta._pkgmirror", "TXT")].values[0]
    assert '"st=down"' in meta3 and '"txtvers=2"' in meta3
    assert ("_owner._pkgmirror", "TXT") in by_name


def test_main_srv_name_is_capped_and_fits_a_udp_answer() -> None:
    fleet = [
        mirror(i, "fresh" if i % 3 else "lagging", target=f"m{i:03d}.mirrors.example.net")
        for i in range(200)
    ]
    main = records.srv_rrsets(fleet, ttl=60)[0]
    assert len(main.values) == records.MAIN_SRV_LIMIT
    assert all(v.startswith("10 ") for v in main.values)  # fresh ones win
    response = dns.message.make_response(
        dns.message.make_query("_pkgmirror._tcp." + ZONE, dns.rdatatype.SRV)
    )
    response.answer.append(main.to_dnspython(ZONE))
    assert len(response.to_wire()) <= records.UDP_ANSWER


def test_regions_get_their_own_names_within_bind_limits() -> None:
    fleet = [mirror(i, region="eu" if i < 5 else "us") for i in range(12)]
    names = {s.name: len(s.values) for s in records.srv_rrsets(fleet, ttl=60)}
    assert names == {"_pkgmirror._tcp": 12, "_pkgmirror._tcp.eu": 5, "_pkgmirror._tcp.us": 7}
    too_many = [mirror(i, region="eu") for i in range(101)]
    with pytest.raises(MirrorfleetError, match="a set holds 100"):
        records.srv_rrsets(too_many, ttl=60)


@pytest.mark.parametrize(
    ("fleet", "message"),
    [
        ([mirror(1), mirror(1)], "duplicate mirror labels"),
        ([mirror(1), mirror(2, target="mirror1.example.net")], "share one target"),
        ([mirror(1, label="Mirror_1")], "not a DNS label"),
        ([mirror(1, label="a" * 64)], "not a DNS label"),
        ([mirror(1, target="bad host.example.net")], "not a DNS label"),
        ([mirror(1, url="http://x/" + "a" * 300)], "at most 255"),
        ([mirror(1, url='http://x/"; rm')], "printable ASCII"),
        ([mirror(1, url="http://exämple/")], "printable ASCII"),
        ([mirror(1, weight=70000)], "weight 0-65535"),
        ([mirror(1, state="stale")], "unknown state"),
        ([mirror(1, target="elsewhere.example.net")], "first label of its target"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(fleet, message: str) -> None:
    with pytest.raises(MirrorfleetError, match=message):
        records.desired_records(ZONE, head(), fleet, owner="fleet-a")


@pytest.mark.parametrize(
    ("strings", "message"),
    [
        ([b"txtvers=2", "k=\u00e9".encode()], "not ASCII"),
        ([b"txtvers=2", b"novalue"], "not key=value"),
        ([b"txtvers=2", b"k=a b"], "not key=value"),
        ([b"txtvers=2", b"k=1", b"k=2"], "appears twice"),
        ([b"txtvers=3"], "unsupported txtvers"),
        ([b"serial=1"], "unsupported txtvers"),
        (
            [b"txtvers=2"]
            + [b"k" + bytes([97 + i % 26]) * 2 + b"=" + b"x" * 200 for i in range(3)],
            "over 400",
        ),
    ],
)
def test_hostile_txt_is_refused(strings: list[bytes], message: str) -> None:
    with pytest.raises(MirrorfleetError, match=message):
        records.parse_txt(strings)


def test_head_without_a_valid_signature_field_is_refused() -> None:
    with pytest.raises(MirrorfleetError, match="lacks a valid field"):
        records.stamp_from_head(
            {"txtvers": "1", "serial": "1", "ts": "1", "origin": "o", "kid": "x", "sig": "@@"}
        )
