"""Signed documents, stamps and pings: what verifies, and everything that must not."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.notify.ping import BadPing, PingVerifier, auth_header
from mirrorfleet.tree.signed import BadSignature, sign, verify
from mirrorfleet.tree.stamp import Stamp, parse_stamp

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
SECRET = b"s" * 64


def test_sign_verify_roundtrip() -> None:
    raw = sign({"serial": 3, "b": [1, 2]}, KEY)
    assert verify(raw, [OTHER.public_key(), KEY.public_key()]) == {"serial": 3, "b": [1, 2]}
    envelope = json.loads(raw)  # plain JSON: one key a line, "signed" as it was signed
    assert sorted(envelope) == ["key", "sig", "signed"] and raw.endswith(b"}\n")
    assert b'"signed": {"b":[1,2],"serial":3}\n' in raw


def test_signed_text_survives_any_string() -> None:
    doc = {"name": 'quote " backslash \\ newline \n é \u2028', "n": -1}
    assert verify(sign(doc, KEY), [KEY.public_key()]) == doc


def _tamper(raw: bytes, **changes: object) -> bytes:
    doc = json.loads(raw)
    doc["signed"].update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (_tamper(sign({"serial": 3}, KEY), serial=4), "does not verify"),
        (sign({"serial": 3}, OTHER), "unknown key"),
        (b"not json", "not a signed document"),
        (b'{"signed": {}, "key": "x"}', "not a signed document"),
        (b'{"signed": [], "key": "x", "sig": ""}', "not an object"),
        (b'{"signed": {}, "key": "x", "sig": "@@@"}', "not a signed document"),
    ],
)
def test_bad_documents_are_rejected(raw: bytes, message: str) -> None:
    with pytest.raises(BadSignature, match=message):
        verify(raw, [KEY.public_key()])


def test_stamp_roundtrip_and_bad_fields() -> None:
    stamp = Stamp.new(7, "origin")
    assert parse_stamp(stamp.sign(KEY), [KEY.public_key()]) == stamp
    with pytest.raises(BadSignature, match="lacks a valid field"):
        parse_stamp(sign({"serial": "x", "ts": 1, "origin": "o", "v": 1}, KEY), [KEY.public_key()])
    with pytest.raises(BadSignature, match="lacks a valid field: 'expires'"):
        parse_stamp(sign({"serial": 1, "ts": 1, "origin": "o", "v": 1}, KEY), [KEY.public_key()])
    fields = stamp.signed()
    for bad, message in [
        ({"v": 1}, r"unsupported stamp \(v=1"),
        ({"expires": stamp.ts}, "expires before it was made"),
        ({"snapshot": "ab"}, "snapshot is not a sha256"),
        ({"record": "A" * 64}, "record is not a sha256"),
        ({"expires": True}, "lacks a valid field"),
    ]:
        with pytest.raises(BadSignature, match=message):
            parse_stamp(sign({**fields, **bad}, KEY), [KEY.public_key()])


def test_a_stamp_expires_on_the_verifiers_clock_and_a_heartbeat_renews_it() -> None:
    stamp = Stamp.new(7, "origin", lifetime=600)
    assert not stamp.expired(stamp.ts + 599) and stamp.expiry_problem(stamp.ts + 599) is None
    assert stamp.expired(stamp.ts + 600)
    assert "stamp of serial 7 expired at" in (stamp.expiry_problem(stamp.ts + 600) or "")
    renewed = stamp.renewed(600, now=stamp.ts + 500)
    assert (renewed.serial, renewed.snapshot, renewed.record) == (7, stamp.snapshot, stamp.record)
    assert (renewed.ts, renewed.expires) == (stamp.ts + 500, stamp.ts + 1100)
    assert not renewed.expired(stamp.ts + 600)


def test_ping_accepted_once() -> None:
    verifier = PingVerifier(SECRET)
    body = b'{"event":"publish"}'
    header = auth_header(SECRET, body, now=1000)
    assert verifier.check(header, body, now=1001) == {"event": "publish"}
    with pytest.raises(BadPing, match="replayed"):
        verifier.check(header, body, now=1002)


@pytest.mark.parametrize(
    ("header_for", "body", "now", "message"),
    [
        (lambda b: None, b"{}", 1000, "missing"),
        (lambda b: "garbage", b"{}", 1000, "malformed"),
        (lambda b: auth_header(b"x" * 64, b, now=1000), b"{}", 1000, "bad MAC"),
        (lambda b: auth_header(SECRET, b"{}", now=1000), b'{"a":1}', 1000, "bad MAC"),
        (lambda b: auth_header(SECRET, b, now=1000), b"{}", 1100, "outside"),
        (lambda b: auth_header(SECRET, b, now=1000), b"[1]", 1000, "not a JSON object"),
        (lambda b: auth_header(SECRET, b, now=1000), b"x" * 5000, 1000, "too large"),
    ],
)
def test_bad_pings_are_rejected(header_for, body: bytes, now: int, message: str) -> None:
    with pytest.raises(BadPing, match=message):
        PingVerifier(SECRET).check(header_for(body), body, now=now)
