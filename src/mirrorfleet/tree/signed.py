"""Signed JSON documents: stamps, manifest shards and the changes journal.

One envelope format, `{"signed": {...}, "key": <key id>, "sig": <base64>}`, where
the signature covers the canonical JSON of "signed" (sorted keys, no spaces,
ASCII). Canonical form is derived, so nothing else needs to be trusted byte for byte.

The keys document (tree/trust.py) is signed by a threshold of root keys, so it has
its own envelope, `{"signed": {...}, "signatures": [{"key": .., "sig": ..}, ...]}`,
over the same canonical form: sign_many and verify_threshold.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.errors import MirrorfleetError, UserError
from mirrorfleet.tree.keys import key_id

MAX_DOCUMENT = 64 * 1024 * 1024  # a manifest shard of PyPI's size is far below this
# More signatures than any sane root set: each one may cost a verification.
MAX_SIGNATURES = 32


class BadSignature(MirrorfleetError):
    """The document is malformed, signed by an unknown key, or tampered with.

    `key`: the signer's key id when the only fault is that the key is not among
    those accepted, so a caller can say why (revoked, certificate ended: trust.py).
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(data: Mapping[str, Any], key: Ed25519PrivateKey) -> bytes:
    """The envelope, one key a line; "signed" is the canonical JSON that was signed,
    as it is (one C-encoded pass: a journal of 100,000 names signs in milliseconds,
    where pretty-printing it took a tenth of a second)."""
    body = canonical(data)
    kid = json.dumps(key_id(key.public_key()))
    sig = json.dumps(base64.b64encode(key.sign(body)).decode())
    return f'{{\n "key": {kid},\n "sig": {sig},\n "signed": '.encode() + body + b"\n}\n"


def verify(raw: bytes, keys: Sequence[Ed25519PublicKey]) -> dict[str, Any]:
    """Return the signed content, or raise BadSignature saying why."""
    if len(raw) > MAX_DOCUMENT:
        raise BadSignature(f"document of {len(raw)} bytes is larger than {MAX_DOCUMENT}")
    try:
        envelope = json.loads(raw)
        data, kid, sig = envelope["signed"], envelope["key"], envelope["sig"]
        signature = base64.b64decode(sig, validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        raise BadSignature(f"not a signed document: {exc}") from None
    if not isinstance(data, dict):
        raise BadSignature("signed content is not an object")
    for key in keys:
        if key_id(key) == kid:
            try:
                key.verify(signature, canonical(data))
            except InvalidSignature:
                raise BadSignature(f"signature by key {kid} does not verify") from None
            return data
    raise BadSignature(f"signed by unknown key {kid!r}", key=kid if isinstance(kid, str) else None)


def sign_many(data: Mapping[str, Any], keys: Sequence[Ed25519PrivateKey]) -> bytes:
    """The multi-signature envelope, signed by every key given (one signature per key
    id, sorted by it): Ed25519 is deterministic, so the same content and keys give
    the same bytes, and a rerun that changes nothing rewrites nothing."""
    if not keys:
        raise UserError("no key to sign with")
    body = canonical(data)
    by_id = {key_id(key.public_key()): key for key in keys}
    lines = [
        f'  {{"key": {json.dumps(kid)}, "sig": "{base64.b64encode(key.sign(body)).decode()}"}}'
        for kid, key in sorted(by_id.items())
    ]
    signatures = ",\n".join(lines)
    return f'{{\n "signatures": [\n{signatures}\n ],\n "signed": '.encode() + body + b"\n}\n"


def verify_threshold(
    raw: bytes,
    keys: Sequence[Ed25519PublicKey],
    threshold: int,
    *,
    limit: int = MAX_DOCUMENT,
) -> dict[str, Any]:
    """The signed content when at least `threshold` of `keys` signed it; else
    BadSignature saying how many of how many verified.

    Counted by distinct key id: a signature by a key not in `keys` is ignored (a
    document may carry signatures for other verifiers), a second signature by the
    same key counts once, and a bad signature by a known key counts nothing. Two
    copies of one key in `keys` are one key: a threshold is of distinct keys.
    """
    pinned = {key_id(key): key for key in keys}
    if not 1 <= threshold <= len(pinned):
        raise UserError(f"threshold {threshold} must be between 1 and the {len(pinned)} keys")
    if len(raw) > limit:
        raise BadSignature(f"document of {len(raw)} bytes is larger than {limit}")
    try:
        envelope = json.loads(raw)
        data, entries = envelope["signed"], envelope["signatures"]
        if not isinstance(entries, list):
            raise TypeError("signatures is not a list")
        signatures = [(entry["key"], entry["sig"]) for entry in entries]
        if not all(isinstance(k, str) and isinstance(s, str) for k, s in signatures):
            raise TypeError("a signature's key and sig are not strings")
    except (ValueError, KeyError, TypeError) as exc:
        raise BadSignature(f"not a multi-signed document: {exc}") from None
    if not isinstance(data, dict):
        raise BadSignature("signed content is not an object")
    if len(signatures) > MAX_SIGNATURES:
        raise BadSignature(f"{len(signatures)} signatures, more than {MAX_SIGNATURES}")
    body = canonical(data)
    good: set[str] = set()
    bad: set[str] = set()
    for kid, sig in signatures:
        if kid not in pinned or kid in good:
            continue
        try:
            pinned[kid].verify(base64.b64decode(sig, validate=True), body)
        except (InvalidSignature, ValueError):
            bad.add(kid)
            continue
        good.add(kid)
    if len(good) < threshold:
        failed = sorted(bad - good)
        why = f"; signature by {', '.join(failed)} does not verify" if failed else ""
        raise BadSignature(
            f"{len(good)} valid signature(s) by the {len(pinned)} pinned keys, "
            f"{threshold} needed{why}"
        )
    return data
