"""The keys document: a threshold of pinned roots certifies the online key; rollback,
expiry, revocation and periods are refused with the reason; the head TXT's budget."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mirrorfleet.errors import UserError
from mirrorfleet.tree.keys import key_id
from mirrorfleet.tree.signed import BadSignature, sign, sign_many, verify, verify_threshold
from mirrorfleet.tree.trust import (
    DAY,
    HEAD_POINTER_MAX_BYTES,
    MAX_KEYS,
    Keyring,
    KeysDocument,
    certify,
    check_head_pointer,
    head_pointer,
    needs_certificate,
    new_document,
    parse_keys,
    revoke,
    rotate,
    trusted_keys,
    when,
    why_refused,
)
from mirrorfleet.zone.records import MAX_TXT_TOTAL, txt_value

ROOTS = [Ed25519PrivateKey.generate() for _ in range(3)]
PINNED = [k.public_key() for k in ROOTS]
ONLINE = Ed25519PrivateKey.generate()
NEXT = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
NOW = 1_800_000_000
ONLINE_ID, NEXT_ID = key_id(ONLINE.public_key()), key_id(NEXT.public_key())


def first(threshold: int = 2, days: int = 365) -> KeysDocument:
    """Version 1: the roots certify ONLINE from NOW for `days`."""
    return certify(new_document(PINNED, threshold), ONLINE.public_key(), NOW, days)


def ids(keys: list) -> list[str]:
    return sorted(key_id(k) for k in keys)


# tree/signed.py: the multi-signature envelope


def test_sign_many_is_deterministic_and_verifies_by_threshold() -> None:
    raw = sign_many({"a": 1}, ROOTS)
    assert raw == sign_many({"a": 1}, list(reversed(ROOTS)))  # same bytes on a rerun
    envelope = json.loads(raw)
    assert sorted(envelope) == ["signatures", "signed"]
    assert [s["key"] for s in envelope["signatures"]] == sorted(key_id(k) for k in PINNED)
    assert verify_threshold(raw, PINNED, 3) == {"a": 1}


def test_one_short_of_the_threshold_is_refused() -> None:
    raw = sign_many({"a": 1}, ROOTS[:1])
    assert verify_threshold(raw, PINNED, 1) == {"a": 1}
    with pytest.raises(
        BadSignature, match=r"1 valid signature\(s\) by the 3 pinned keys, 2 needed"
    ):
        verify_threshold(raw, PINNED, 2)
    assert verify_threshold(sign_many({"a": 1}, ROOTS[:2]), PINNED, 2) == {"a": 1}


def test_a_duplicate_signature_counts_once() -> None:
    envelope = json.loads(sign_many({"a": 1}, ROOTS[:1]))
    envelope["signatures"] *= 2
    with pytest.raises(BadSignature, match=r"^1 valid signature\(s\) by the 3 pinned keys, 2"):
        verify_threshold(json.dumps(envelope).encode(), PINNED, 2)
    # two copies of one pinned key are one key: a threshold of 2 cannot be met by it
    with pytest.raises(UserError, match="threshold 2 must be between 1 and the 1 keys"):
        verify_threshold(sign_many({"a": 1}, ROOTS[:1]), [PINNED[0], PINNED[0]], 2)


def test_an_unknown_signer_is_ignored_and_a_bad_signature_counts_nothing() -> None:
    raw = sign_many({"a": 1}, [ROOTS[0], STRANGER])
    assert verify_threshold(raw, PINNED, 1) == {"a": 1}
    with pytest.raises(BadSignature, match=r"1 valid signature\(s\)"):
        verify_threshold(raw, PINNED, 2)
    envelope = json.loads(sign_many({"a": 1}, ROOTS[:2]))
    envelope["signed"]["a"] = 2
    with pytest.raises(BadSignature, match=r"0 valid signature\(s\).*does not verify"):
        verify_threshold(json.dumps(envelope).encode(), PINNED, 1)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"[]", "not a multi-signed document"),
        (b'{"signed": {}, "signatures": {}}', "not a multi-signed document"),
        (b'{"signed": {}, "signatures": [{"key": 1, "sig": ""}]}', "not a multi-signed"),
        (b'{"signed": [], "signatures": []}', "not an object"),
        (
            json.dumps({"signed": {}, "signatures": [{"key": "k", "sig": ""}] * 33}).encode(),
            "33 signatures, more than 32",
        ),
    ],
)
def test_malformed_envelopes_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(BadSignature, match=message):
        verify_threshold(raw, PINNED, 1)


def test_verify_names_the_unknown_signer() -> None:
    with pytest.raises(BadSignature) as caught:
        verify(sign({"a": 1}, STRANGER), PINNED)
    assert caught.value.key == key_id(STRANGER.public_key())


# parse_keys: what a verifier accepts


def test_a_document_verifies_against_the_pinned_roots() -> None:
    doc = first()
    assert parse_keys(doc.sign(ROOTS[:2]), PINNED, 2, NOW) == doc
    one = sign_many(doc.signed(), ROOTS[:1])
    assert parse_keys(one, PINNED, 1, NOW) == doc
    with pytest.raises(BadSignature, match=r"^keys document: 1 valid signature\(s\) by the 3"):
        parse_keys(one, PINNED, 2, NOW)
    with pytest.raises(UserError, match="1 root key"):
        doc.sign(ROOTS[:1])  # the signer says it at once, not every verifier later


def test_the_roots_a_document_lists_do_not_count() -> None:
    """An attacker lists their own key as the root and signs with it: refused, since
    only the roots the verifier pinned count."""
    forged = certify(new_document([STRANGER.public_key()], 1), ONLINE.public_key(), NOW, 30)
    raw = forged.sign([STRANGER])
    assert parse_keys(raw, [STRANGER.public_key()], 1, NOW).version == 1
    with pytest.raises(BadSignature, match=r"0 valid signature\(s\) by the 3 pinned keys"):
        parse_keys(raw, PINNED, 1, NOW)


def test_a_rollback_of_the_keys_document_is_refused() -> None:
    v1 = first()
    v2 = revoke(rotate(v1, NEXT.public_key(), NOW, 365), ONLINE_ID, NOW)
    assert v2.version == 3
    assert parse_keys(v2.sign(ROOTS), PINNED, 2, NOW, floor_version=3).version == 3
    with pytest.raises(BadSignature, match="version 1 is older than version 3 already accepted"):
        parse_keys(v1.sign(ROOTS), PINNED, 2, NOW, floor_version=3)


def test_an_expired_document_is_refused_with_its_expiry() -> None:
    doc = first(days=30)
    raw = doc.sign(ROOTS)
    assert doc.expires == NOW + 30 * DAY
    assert parse_keys(raw, PINNED, 2, doc.expires).version == 1  # the last second counts
    with pytest.raises(BadSignature, match="version 1 expired at 2027-02-14 08:00:00Z"):
        parse_keys(raw, PINNED, 2, doc.expires + 1)
    assert parse_keys(raw, PINNED, 2, doc.expires + 1, check_expiry=False) == doc


def test_a_document_over_the_size_bound_is_refused() -> None:
    raw = first().sign(ROOTS)
    padded = raw[:-2] + b" " * (MAX_KEYS - len(raw) + 1) + raw[-2:]
    assert json.loads(padded)
    with pytest.raises(BadSignature, match=f"of {MAX_KEYS + 1} bytes is larger than {MAX_KEYS}"):
        parse_keys(padded, PINNED, 2, NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": True}, "True is not a non-negative integer"),
        ({"version": 0}, "version 0 is not between 1"),
        ({"threshold": 4}, "threshold 4 of 3 roots"),
        ({"type": "tuf-root"}, "unsupported keys document"),
        ({"revoked": ["ABC"]}, "not 16 hex digits"),
        ({"online": [{"key": "AAAA", "not_before": 1, "not_after": 2}]}, "bad Ed25519 public key"),
        ({"expires": NOW - 1}, "expires before it was issued"),
    ],
)
def test_bad_fields_are_refused(change: dict, message: str) -> None:
    data = first().signed() | change
    with pytest.raises(BadSignature, match=message):
        parse_keys(sign_many(data, ROOTS), PINNED, 2, NOW)


# trusted_keys and why_refused: what verify() is given, and why a key is not in it


def test_without_a_document_the_pinned_key_signs_directly() -> None:
    """A fleet with no keys.json: its pinned key is accepted as it is today."""
    legacy = [ONLINE.public_key()]
    assert ids(trusted_keys(legacy, 1, None, NOW)) == [ONLINE_ID]
    assert why_refused(ONLINE_ID, legacy, 1, None, NOW) is None
    assert why_refused(NEXT_ID, legacy, 1, None, NOW) == (
        f"key {NEXT_ID} is unknown: no keys document, and it is not a pinned key"
    )


def test_with_a_threshold_a_root_never_signs_directly() -> None:
    doc = first()
    assert ids(trusted_keys(PINNED, 2, doc, NOW)) == [ONLINE_ID]
    root = key_id(PINNED[0])
    assert why_refused(root, PINNED, 2, doc, NOW) == (
        f"key {root} is a root key: with a threshold of 2 it signs only keys.json"
    )
    assert ids(trusted_keys(PINNED[:1], 1, None, NOW)) == [root]


def test_a_revoked_key_is_refused_with_the_reason() -> None:
    doc = revoke(rotate(first(), NEXT.public_key(), NOW, 365), ONLINE_ID, NOW + 10)
    assert ids(trusted_keys(PINNED, 2, doc, NOW + 10)) == [NEXT_ID]
    assert why_refused(ONLINE_ID, PINNED, 2, doc, NOW + 10) == (
        f"key {ONLINE_ID} is revoked (keys document version 3)"
    )
    # a stamp the revoked key signed: verify() names the signer, the keyring says why
    with pytest.raises(BadSignature) as caught:
        verify(sign({"serial": 5}, ONLINE), trusted_keys(PINNED, 2, doc, NOW + 10))
    assert caught.value.key == ONLINE_ID
    assert verify(sign({"serial": 5}, NEXT), trusted_keys(PINNED, 2, doc, NOW + 10))


def test_a_revoked_pinned_key_is_not_accepted_directly() -> None:
    doc = replace(first(threshold=1), revoked=(key_id(PINNED[0]),))
    assert ids(trusted_keys(PINNED[:1], 1, doc, NOW)) == [ONLINE_ID]


def test_a_certificate_outside_its_period_is_refused() -> None:
    doc = first(days=30)
    end = NOW + 30 * DAY
    assert ids(trusted_keys(PINNED, 2, doc, NOW)) == [ONLINE_ID]
    assert ids(trusted_keys(PINNED, 2, doc, end)) == [ONLINE_ID]
    assert trusted_keys(PINNED, 2, doc, NOW - 1) == []
    assert why_refused(ONLINE_ID, PINNED, 2, doc, NOW - 1) == (
        f"key {ONLINE_ID} is certified from {when(NOW)} (keys document version 1)"
    )
    # a document that outlives the certificate: the certificate's end is what counts
    longer = replace(doc, expires=end + 10 * DAY)
    assert trusted_keys(PINNED, 2, longer, end + 1) == []
    assert why_refused(ONLINE_ID, PINNED, 2, longer, end + 1) == (
        f"key {ONLINE_ID}'s certificate ended at {when(end)} (keys document version 1)"
    )
    assert why_refused(ONLINE_ID, PINNED, 2, doc, end + 1) == (
        f"key {ONLINE_ID}: keys document version 1 expired at {when(end)}"
    )
    assert why_refused(NEXT_ID, PINNED, 2, doc, NOW) == (
        f"key {NEXT_ID} is not certified (keys document version 1)"
    )


# the operator's operations


def test_rotation_keeps_the_old_key_until_it_retires() -> None:
    later = NOW + 100 * DAY
    doc = rotate(first(), NEXT.public_key(), later, 365, retire_after_days=7)
    assert doc.version == 2 and doc.issued == later
    assert doc.certificate(ONLINE_ID).not_after == later + 7 * DAY
    assert doc.certificate(NEXT_ID).not_after == later + 365 * DAY
    assert doc.expires == later + 365 * DAY
    assert ids(trusted_keys(PINNED, 2, doc, later + 7 * DAY)) == sorted([ONLINE_ID, NEXT_ID])
    assert ids(trusted_keys(PINNED, 2, doc, later + 7 * DAY + 1)) == [NEXT_ID]
    # without --retire-after, the old key runs to the end of its certificate
    kept = rotate(first(), NEXT.public_key(), later, 365)
    assert kept.certificate(ONLINE_ID).not_after == NOW + 365 * DAY
    with pytest.raises(UserError, match="certified already: a rotation needs a new key"):
        rotate(kept, NEXT.public_key(), later, 365)


def test_certify_drops_ended_certificates_and_renews() -> None:
    doc = rotate(first(days=30), NEXT.public_key(), NOW, 365)
    renewed = certify(doc, NEXT.public_key(), NOW + 31 * DAY, 365)
    assert [c.kid for c in renewed.online] == [NEXT_ID]
    assert renewed.certificate(NEXT_ID).not_before == NOW + 31 * DAY


def test_needs_certificate_says_what_long_enough_is() -> None:
    doc = first(days=100)
    assert needs_certificate(new_document(PINNED, 2), ONLINE.public_key(), NOW, 30) == (
        "there is no keys document yet"
    )
    assert needs_certificate(doc, ONLINE.public_key(), NOW + 70 * DAY, 30) is None
    assert needs_certificate(doc, ONLINE.public_key(), NOW + 70 * DAY + 1, 30) == (
        f"key {ONLINE_ID}'s certificate ends {when(NOW + 100 * DAY)}, in under 30d"
    )
    assert needs_certificate(doc, NEXT.public_key(), NOW, 30) == f"key {NEXT_ID} is not certified"


def test_revoking_the_only_valid_key_needs_force() -> None:
    doc = first()
    with pytest.raises(UserError, match=f"key {ONLINE_ID} is the only valid online key"):
        revoke(doc, ONLINE_ID, NOW)
    forced = revoke(doc, ONLINE_ID, NOW, force=True)
    assert forced.version == 2 and forced.revoked == (ONLINE_ID,) and forced.online == ()
    assert trusted_keys(PINNED, 2, forced, NOW) == []
    assert revoke(forced, ONLINE_ID, NOW + 5) is forced  # revoked already: the same document
    with pytest.raises(UserError, match="revoked: it is never certified again"):
        certify(forced, ONLINE.public_key(), NOW, 365)


@pytest.mark.parametrize(
    ("kid", "message"),
    [("XYZ", "is not a key id"), (key_id(PINNED[1]), "is a root key")],
)
def test_revoke_refuses_what_it_cannot_revoke(kid: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        revoke(first(), kid, NOW)


# Keyring: the verifier's view across heartbeats


def test_the_keyring_follows_newer_documents_and_refuses_older_ones() -> None:
    v1 = first()
    v2 = rotate(v1, NEXT.public_key(), NOW, 365)
    v3 = revoke(v2, ONLINE_ID, NOW + 60)
    ring = Keyring(PINNED, 2)
    assert ids(ring.keys(NOW)) == []  # a threshold of 2 and no document: nothing yet
    assert ring.update(v1.sign(ROOTS), NOW) is True
    assert ids(ring.keys(NOW)) == [ONLINE_ID]
    assert ring.update(v1.sign(ROOTS[1:]), NOW) is False  # the same document, other signers
    assert ring.update(v2.sign(ROOTS), NOW) is True
    assert ids(ring.keys(NOW)) == sorted([ONLINE_ID, NEXT_ID])
    assert ring.update(v3.sign(ROOTS), NOW + 60) is True
    assert ids(ring.keys(NOW + 60)) == [NEXT_ID]
    assert ring.why_refused(ONLINE_ID, NOW + 60) == (
        f"key {ONLINE_ID} is revoked (keys document version 3)"
    )
    with pytest.raises(BadSignature, match="version 2 is older than version 3"):
        ring.update(v2.sign(ROOTS), NOW + 60)
    other = replace(v3, issued=v3.issued + 1)
    with pytest.raises(BadSignature, match="version 3 differs from the one accepted"):
        ring.update(other.sign(ROOTS), NOW + 60)
    assert ring.version == 3
    with pytest.raises(UserError, match="root threshold 4 of 3"):
        Keyring(PINNED, 4)


# the head TXT record


def test_the_head_names_the_current_document() -> None:
    v1 = first()
    v2 = rotate(v1, NEXT.public_key(), NOW, 365)
    pointer = dict(head_pointer(v2))
    assert pointer == {"kv": "2", "kd": v2.digest[:16]}
    check_head_pointer(v2, pointer)
    check_head_pointer(v2, {"kv": "1", "kd": "0" * 16})  # newer than the head: fine
    check_head_pointer(v2, {})  # a head from before keys documents
    with pytest.raises(BadSignature, match="version 1 is older than version 2 the head names"):
        check_head_pointer(v1, pointer)
    with pytest.raises(BadSignature, match="version 2 is not the one the head names"):
        check_head_pointer(replace(v2, issued=v2.issued + 1), pointer)


def test_the_head_pointer_fits_the_txt_budget() -> None:
    """Today's head fields at their longest, plus the coming exp= and snap=, plus
    kv= and kd=: 356 of the 400 bytes (each string costs one length byte)."""
    today = [
        ("txtvers", 1),
        ("serial", "9" * 20),  # any 64-bit serial
        ("ts", "9" * 10),
        ("origin", "o" * 63),  # a DNS label at its longest
        ("kid", "f" * 16),
        ("sig", base64.b64encode(b"\xff" * 64).decode()),
    ]
    coming = [("exp", "9" * 10), ("snap", "f" * 64)]
    pointer = [("kv", "9" * 10), ("kd", "f" * 16)]

    def cost(pairs: list) -> int:
        return sum(len(f"{k}={v}") + 1 for k, v in pairs)

    assert (cost(today), cost(coming), cost(pointer)) == (237, 85, 34)
    assert cost(pointer) == HEAD_POINTER_MAX_BYTES
    assert cost(today + coming + pointer) == 356 <= MAX_TXT_TOTAL
    txt_value(today + coming + pointer)  # zone/records.py accepts it as it stands
    assert dict(head_pointer(first()))["kd"] == first().digest[:16]
