"""The keys document: an offline root certifies the origin's online signing key.

TUF's root role, cut down to what a fleet of mirrors needs. Verifiers (agents, the
monitor, clients) pin the root public key(s) and a threshold, never the online key;
`.mirror/keys.json` says which online keys the roots certify, for which period, and
which key ids are revoked. The origin signs stamps, shards and change records with
its online key as today, so a rotation is a new keys document and a new key on the
origin: nothing a verifier pins changes.

Signed content (canonical JSON, in tree/signed.py's multi-signature envelope):

    {"v": 1, "type": "mirrorfleet-keys", "version": 7, "issued": T, "expires": T,
     "roots": [b64 public key, ...], "threshold": k,
     "online": [{"key": b64, "not_before": T, "not_after": T}, ...],
     "revoked": [key id, ...]}

Everything here is pure: bytes and times in, documents and key lists out. Files are
tree/keyfiles.py's; the commands are cli/keys.py's.

Left out on purpose: root rotation. A document verifies against the roots the
verifier PINNED, never against the roots it lists itself ("roots" says what the
operator's offline folder holds, for `keys show` and for a later chained rotation,
where version N+1 would be signed by a threshold of version N's roots and of its
own, as TUF does). Replacing a root today means pinning the new one everywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.errors import MirrorfleetError, UserError
from mirrorfleet.tree.files import META_DIR
from mirrorfleet.tree.keys import key_id, parse_public_key, public_key_text
from mirrorfleet.tree.signed import BadSignature, canonical, sign_many, verify_threshold

KEYS_PATH = f"{META_DIR}/keys.json"
KEYS_TYPE = "mirrorfleet-keys"
KEYS_FORMAT = 1
# A document with 3 roots, 3 signatures, 4 online keys and 20 revoked ids is about
# 1.5 KB: 64 KB is room for any real fleet and a bound on what a verifier reads.
MAX_KEYS = 64 * 1024
MAX_VERSION = 10**10 - 1  # at most 10 digits in the head TXT (HEAD_POINTER_MAX_BYTES)
MAX_ROOTS = 16
DAY = 86400
MAX_DAYS = 10 * 366  # a certificate longer than ten years is a typo
KEY_ID_RE = re.compile(r"[0-9a-f]{16}")

# What the DNS head record carries about the keys document (zone/records.py's TXT):
# the version a client must have at least, and 64 bits of its digest to tell two
# documents of one version apart. The document itself comes from any mirror at
# KEYS_PATH; the roots' signatures, not the head, make it trusted.
HEAD_VERSION_FIELD = "kv"
HEAD_DIGEST_FIELD = "kd"
HEAD_DIGEST_HEX = 16
# Each TXT string costs its length plus one length byte: "kv=" + 10 digits, "kd=" + 16.
HEAD_POINTER_MAX_BYTES = (3 + len(str(MAX_VERSION)) + 1) + (3 + HEAD_DIGEST_HEX + 1)


def when(ts: int) -> str:
    """A time as operators read it in messages (UTC, to the second)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@dataclass(frozen=True)
class Certificate:
    """One online key the roots vouch for, from not_before to not_after inclusive."""

    key: str  # base64 raw Ed25519 public key, as public_key_text writes it
    not_before: int
    not_after: int

    @property
    def public(self) -> Ed25519PublicKey:
        return parse_public_key(self.key)

    @property
    def kid(self) -> str:
        return key_id(self.public)

    def state(self, now: int) -> str:
        """One of "valid", "not yet valid", "ended" at `now` (revocation is the document's)."""
        if now < self.not_before:
            return "not yet valid"
        if now > self.not_after:
            return "ended"
        return "valid"

    def signed(self) -> dict[str, Any]:
        return {"key": self.key, "not_after": self.not_after, "not_before": self.not_before}


@dataclass(frozen=True)
class KeysDocument:
    """The signed content of a keys document, checked for shape (not for signatures:
    parse_keys does both)."""

    version: int
    issued: int
    expires: int
    roots: tuple[str, ...]
    threshold: int
    online: tuple[Certificate, ...] = ()
    revoked: tuple[str, ...] = ()

    def signed(self) -> dict[str, Any]:
        return {
            "v": KEYS_FORMAT,
            "type": KEYS_TYPE,
            "version": self.version,
            "issued": self.issued,
            "expires": self.expires,
            "roots": list(self.roots),
            "threshold": self.threshold,
            "online": [c.signed() for c in self.online],
            "revoked": list(self.revoked),
        }

    @classmethod
    def from_signed(cls, data: Mapping[str, Any]) -> KeysDocument:
        """The document, or BadSignature naming the first field that is wrong."""
        try:
            if data["v"] != KEYS_FORMAT or data["type"] != KEYS_TYPE:
                raise ValueError(f"unsupported keys document v={data['v']!r} {data['type']!r}")
            online = tuple(
                Certificate(_text(c["key"]), _int(c["not_before"]), _int(c["not_after"]))
                for c in _list(data["online"])
            )
            doc = cls(
                version=_int(data["version"]),
                issued=_int(data["issued"]),
                expires=_int(data["expires"]),
                roots=tuple(_text(r) for r in _list(data["roots"])),
                threshold=_int(data["threshold"]),
                online=online,
                revoked=tuple(_text(r) for r in _list(data["revoked"])),
            )
            doc.check()
        except (KeyError, TypeError, ValueError, UserError) as exc:
            raise BadSignature(f"keys document lacks a valid field: {exc}") from None
        return doc

    def check(self) -> None:
        """ValueError unless every field is in range: what from_signed refuses."""
        if not 1 <= self.version <= MAX_VERSION:
            raise ValueError(f"version {self.version} is not between 1 and {MAX_VERSION}")
        if self.expires < self.issued:
            raise ValueError("it expires before it was issued")
        root_ids = [key_id(parse_public_key(r)) for r in self.roots]
        if not 1 <= len(set(root_ids)) == len(root_ids) <= MAX_ROOTS:
            raise ValueError(f"roots must be 1 to {MAX_ROOTS} distinct keys")
        if not 1 <= self.threshold <= len(root_ids):
            raise ValueError(f"threshold {self.threshold} of {len(root_ids)} roots")
        ids = [c.kid for c in self.online]
        if len(set(ids)) != len(ids):
            raise ValueError("an online key is listed twice")
        if any(c.not_before > c.not_after for c in self.online):
            raise ValueError("a certificate ends before it starts")
        if not all(KEY_ID_RE.fullmatch(r) for r in self.revoked):
            raise ValueError("a revoked key id is not 16 hex digits")

    @property
    def digest(self) -> str:
        """sha256 of the canonical signed content: the same document whatever the
        envelope's layout or which extra signatures it carries."""
        return hashlib.sha256(canonical(self.signed())).hexdigest()

    @property
    def root_ids(self) -> list[str]:
        return [key_id(parse_public_key(r)) for r in self.roots]

    def certificate(self, kid: str) -> Certificate | None:
        return next((c for c in self.online if c.kid == kid), None)

    def expired(self, now: int) -> bool:
        return now > self.expires

    def sign(self, root_keys: Sequence[Ed25519PrivateKey]) -> bytes:
        """The envelope, signed by every root key given; refused (UserError) when they
        are fewer than the threshold or not this document's roots, so the operator
        learns it here and not from every verifier."""
        try:
            self.check()
        except (ValueError, UserError) as exc:
            raise UserError(
                f"refusing to sign keys document version {self.version}: {exc}"
            ) from None
        wanted = set(self.root_ids)
        ids = {key_id(k.public_key()) for k in root_keys}
        if ids - wanted:
            raise UserError(f"root key(s) {', '.join(sorted(ids - wanted))} are not listed roots")
        if len(ids) < self.threshold:
            raise UserError(f"{len(ids)} root key(s) to sign with, {self.threshold} needed")
        raw = sign_many(self.signed(), root_keys)
        if len(raw) > MAX_KEYS:
            raise UserError(f"keys document of {len(raw)} bytes is over {MAX_KEYS}")
        return raw


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{value!r} is not a list")
    return value


def parse_keys(
    raw: bytes,
    anchors: Sequence[Ed25519PublicKey],
    threshold: int,
    now: int,
    floor_version: int = 0,
    *,
    check_expiry: bool = True,
) -> KeysDocument:
    """Verify a keys document against the PINNED root keys, or raise BadSignature.

    The roots the document lists do not count: a verifier trusts it only when a
    threshold of the keys it pinned signed it. floor_version is the highest version
    this verifier already accepted (a lower one is a rollback, which would bring back
    a revoked key); check_expiry=False is for the operator's own tools, which must
    be able to renew a document that ran out.
    """
    if len(raw) > MAX_KEYS:
        raise BadSignature(f"keys document of {len(raw)} bytes is larger than {MAX_KEYS}")
    try:
        data = verify_threshold(raw, anchors, threshold, limit=MAX_KEYS)
    except BadSignature as exc:
        raise BadSignature(f"keys document: {exc}") from None
    doc = KeysDocument.from_signed(data)
    if doc.version < floor_version:
        raise BadSignature(
            f"keys document version {doc.version} is older than version {floor_version} "
            "already accepted: a rollback"
        )
    if check_expiry and doc.expired(now):
        raise BadSignature(
            f"keys document version {doc.version} expired at {when(doc.expires)}: "
            "the roots must certify the online key again (`mirrorfleet keys certify`)"
        )
    return doc


def trusted_keys(
    anchors: Sequence[Ed25519PublicKey],
    threshold: int,
    doc: KeysDocument | None,
    now: int,
) -> list[Ed25519PublicKey]:
    """The keys whose signatures on stamps, shards and change records count at `now`:
    a plain list, for tree/signed.py's verify(raw, keys).

    Each online key certified for `now` and not revoked, while the document has not
    expired. Plus the anchors themselves when one anchor alone is trusted
    (threshold 1) and not revoked: a fleet without keys.json, whose pinned key signs
    everything directly, works exactly as before. With a threshold above one, a
    single root signing a stamp would be a way around the threshold, so the roots
    are not accepted directly.
    """
    revoked = set(doc.revoked) if doc else set()
    keys: dict[str, Ed25519PublicKey] = {}
    if threshold == 1:
        keys |= {key_id(a): a for a in anchors if key_id(a) not in revoked}
    if doc is not None and not doc.expired(now):
        for cert in doc.online:
            if cert.state(now) == "valid" and cert.kid not in revoked:
                keys.setdefault(cert.kid, cert.public)
    return list(keys.values())


def why_refused(
    kid: str,
    anchors: Sequence[Ed25519PublicKey],
    threshold: int,
    doc: KeysDocument | None,
    now: int,
) -> str | None:
    """None when trusted_keys accepts key `kid` at `now`, else why not, in words a log
    line or an error can carry as it is."""
    version = f"keys document version {doc.version}" if doc else "no keys document"
    if doc is not None and kid in doc.revoked:
        return f"key {kid} is revoked ({version})"
    if kid in {key_id(a) for a in anchors}:
        if threshold == 1:
            return None
        return f"key {kid} is a root key: with a threshold of {threshold} it signs only keys.json"
    if doc is None:
        return f"key {kid} is unknown: {version}, and it is not a pinned key"
    cert = doc.certificate(kid)
    if cert is None:
        return f"key {kid} is not certified ({version})"
    if doc.expired(now):
        return f"key {kid}: {version} expired at {when(doc.expires)}"
    if cert.state(now) == "not yet valid":
        return f"key {kid} is certified from {when(cert.not_before)} ({version})"
    if cert.state(now) == "ended":
        return f"key {kid}'s certificate ended at {when(cert.not_after)} ({version})"
    return None


class Keyring(Sequence[Ed25519PublicKey]):
    """What a long-running verifier keeps: the pinned roots, and the newest keys
    document it verified. update() on every heartbeat; keys(now) where verify()
    wants its keys; why_refused() when a BadSignature names an unknown key.

    The floor (the version held) lives only as long as the object: a verifier that
    must refuse a rollback across restarts stores `version` and passes it back.
    """

    def __init__(
        self,
        anchors: Sequence[Ed25519PublicKey],
        threshold: int = 1,
        floor_version: int = 0,
    ) -> None:
        if not 1 <= threshold <= len({key_id(a) for a in anchors}):
            raise UserError(f"root threshold {threshold} of {len(anchors)} pinned key(s)")
        self.anchors = tuple(anchors)
        self.threshold = threshold
        self.doc: KeysDocument | None = None
        self.raw: bytes | None = None  # the document's bytes, to serve or keep as they are
        self.floor = floor_version

    @classmethod
    def pinned(cls, keys: Sequence[str], threshold: int = 1) -> Keyring:
        """From a config's public keys (base64, one a key) and its root threshold."""
        return cls([parse_public_key(k) for k in keys], threshold)

    def load(self, path: Path) -> str | None:
        """Adopt the document a verifier kept (its tree's, its state's) when there is
        one; why not, when it does not verify (then the next fetched one decides)."""
        try:
            self.update(path.read_bytes(), int(time.time()))
        except FileNotFoundError:
            return None
        except BadSignature as exc:
            return f"{path}: {exc}"
        return None

    @property
    def version(self) -> int:
        return self.doc.version if self.doc else self.floor

    def update(self, raw: bytes, now: int) -> bool:
        """Adopt a newer document; False when it is the one held. BadSignature for a
        forged, expired or older one, and for a different document under the version
        held (only a root holder can make one: a sign of a leaked root key)."""
        doc = parse_keys(raw, self.anchors, self.threshold, now, self.version)
        if self.doc is not None and doc.version == self.doc.version:
            if doc.digest != self.doc.digest:
                raise BadSignature(
                    f"keys document version {doc.version} differs from the one accepted"
                )
            return False
        self.doc, self.raw = doc, raw
        return True

    def keys(self, now: int) -> list[Ed25519PublicKey]:
        return trusted_keys(self.anchors, self.threshold, self.doc, now)

    def why_refused(self, kid: str, now: int) -> str | None:
        return why_refused(kid, self.anchors, self.threshold, self.doc, now)

    # The keys trusted now, as a sequence: a Keyring goes wherever verify() takes
    # keys, so every reader of a stamp, shard or record honours revocations as is.
    def __iter__(self) -> Iterator[Ed25519PublicKey]:
        return iter(self.keys(int(time.time())))

    def __len__(self) -> int:
        return len(self.keys(int(time.time())))

    def __getitem__(self, index):  # type: ignore[no-untyped-def,override]
        return self.keys(int(time.time()))[index]

    def refresh(self, base_url: str, timeout: float) -> bool:
        """Adopt the keys document a tree serves over HTTP when it is newer; False when
        it has none or the one held. BadSignature when it does not verify."""
        raw = fetch_keys(base_url, timeout)
        return raw is not None and self.update(raw, int(time.time()))

    def signed_by_anchor(self, raw: bytes) -> bool:
        """Whether a verified document's signer is a pinned key itself: then no keys
        document decides anything for it (a verifier still pinning the origin's own
        key while the fleet moves to roots), and one it cannot verify is no error."""
        try:
            kid = json.loads(raw)["key"]
        except (ValueError, KeyError, TypeError):
            return False
        return self.threshold == 1 and kid in {key_id(a) for a in self.anchors}

    def explain(self, error: BadSignature) -> str:
        """A verify() failure in the keyring's words: why the signer is not trusted."""
        if self.doc is None or not error.key:  # nothing to add to "unknown key"
            return str(error)
        return self.why_refused(error.key, int(time.time())) or str(error)


class KeysUnavailable(MirrorfleetError):
    """A tree's keys document could not be fetched (not: it did not verify)."""


def fetch_keys(base_url: str, timeout: float) -> bytes | None:
    """The keys document a tree serves over HTTP; None when it has none (404)."""
    from mirrorfleet import web  # here: the origin's tools never fetch one

    url = f"{base_url.rstrip('/')}/{KEYS_PATH}"
    try:
        answer = web.get(url, MAX_KEYS, timeout)
    except web.READ_ERRORS as exc:
        raise KeysUnavailable(f"keys document {url} unreachable: {exc}") from None
    if answer.status in (404, 410):
        return None
    if answer.status != 200:
        raise KeysUnavailable(f"keys document {url}: HTTP {answer.status}")
    if answer.over(MAX_KEYS):
        raise BadSignature(f"keys document {url} is larger than {MAX_KEYS} bytes")
    return answer.body


def document_version(raw: bytes) -> int:
    """The version a keys document says it is, unverified: what the origin names in its
    stamps (it does not pin the roots; every verifier checks the document itself)."""
    try:
        return KeysDocument.from_signed(json.loads(raw)["signed"]).version
    except (ValueError, KeyError, TypeError, BadSignature) as exc:
        raise UserError(f"the keys document is not one: {exc}") from None


# The operator's operations: each takes a document and returns the next version.
# Times are whole seconds, periods whole days.


def new_document(roots: Sequence[Ed25519PublicKey], threshold: int) -> KeysDocument:
    """The empty version 0 the first certify builds on; never signed or published."""
    return KeysDocument(
        version=0,
        issued=0,
        expires=0,
        roots=tuple(public_key_text(r) for r in roots),
        threshold=threshold,
    )


def _check_days(days: int, what: str = "--days") -> None:
    if not 1 <= days <= MAX_DAYS:
        raise UserError(f"{what} {days} is not between 1 and {MAX_DAYS}")


def _next(doc: KeysDocument, now: int, **changes: Any) -> KeysDocument:
    if doc.version >= MAX_VERSION:
        raise UserError(f"keys document version {doc.version} is the last one")
    return replace(doc, version=doc.version + 1, issued=now, **changes)


def needs_certificate(
    doc: KeysDocument, key: Ed25519PublicKey, now: int, renew_within_days: int
) -> str | None:
    """Why `key` needs a (new) certificate, or None when it is certified and valid long
    enough: its certificate and the document both run at least renew_within_days
    more. What makes `keys certify` a no-op on a rerun."""
    kid = key_id(key)
    if kid in doc.revoked:
        raise UserError(f"key {kid} is revoked: it is never certified again; rotate to a new key")
    cert = doc.certificate(kid)
    horizon = now + renew_within_days * DAY
    if doc.version == 0:
        return "there is no keys document yet"
    if cert is None:
        return f"key {kid} is not certified"
    if cert.state(now) != "valid":
        return f"key {kid}'s certificate is {cert.state(now)}"
    if cert.not_after < horizon:
        return f"key {kid}'s certificate ends {when(cert.not_after)}, in under {renew_within_days}d"
    if doc.expires < horizon:
        return f"the document expires {when(doc.expires)}, in under {renew_within_days}d"
    return None


def certify(doc: KeysDocument, key: Ed25519PublicKey, now: int, days: int) -> KeysDocument:
    """The next version, certifying `key` from now for `days` (replacing its previous
    certificate). Certificates that ended are dropped (keeps the document small);
    the others stay as they are. The document expires with its last certificate."""
    _check_days(days)
    kid = key_id(key)
    if kid in doc.revoked:
        raise UserError(f"key {kid} is revoked: it is never certified again; rotate to a new key")
    if kid in doc.root_ids:
        raise UserError(f"key {kid} is a root key: a root never signs online")
    kept = [c for c in doc.online if c.kid != kid and c.not_after >= now]
    online = sorted([*kept, Certificate(public_key_text(key), now, now + days * DAY)], key=_order)
    return _next(doc, now, online=tuple(online), expires=max(c.not_after for c in online))


def _order(cert: Certificate) -> tuple[int, str]:
    return cert.not_before, cert.kid


def rotate(
    doc: KeysDocument,
    new: Ed25519PublicKey,
    now: int,
    days: int,
    retire_after_days: int | None = None,
) -> KeysDocument:
    """Certify a new online key while the current ones stay valid: shards and change
    records the old key signed stay in trees until they are rewritten, so verifiers
    must accept it until then. With retire_after_days, the old keys' certificates end
    that many days from now (if they would end later); without, they run out."""
    if retire_after_days is not None:
        if not 0 <= retire_after_days <= MAX_DAYS:
            raise UserError(f"--retire-after {retire_after_days} is not between 0 and {MAX_DAYS}")
        end = now + retire_after_days * DAY
        doc = replace(
            doc,
            online=tuple(
                replace(c, not_after=min(c.not_after, end))
                for c in doc.online
                if c.not_before <= end
            ),
        )
    if doc.certificate(key_id(new)) is not None:
        raise UserError(f"key {key_id(new)} is certified already: a rotation needs a new key")
    return certify(doc, new, now, days)


def valid_online(doc: KeysDocument, now: int) -> list[Certificate]:
    """The online certificates a verifier accepts at `now`."""
    if doc.expired(now):
        return []
    return [c for c in doc.online if c.state(now) == "valid" and c.kid not in doc.revoked]


def revoke(doc: KeysDocument, kid: str, now: int, force: bool = False) -> KeysDocument:
    """The next version, with `kid` revoked (and its certificate dropped); the same
    document when it is revoked already. Refused for the only valid online key unless
    force: the origin would then sign nothing any verifier accepts until a new key is
    certified. Refused for a root: the roots are pinned, and replacing one is a root
    rotation, which this does not do."""
    if not KEY_ID_RE.fullmatch(kid):
        raise UserError(f"{kid!r} is not a key id (16 hex digits, as `keys show` lists them)")
    if doc.version == 0:
        raise UserError("there is no keys document yet: nothing is certified to revoke")
    if kid in doc.root_ids:
        raise UserError(
            f"key {kid} is a root key: the roots are pinned by every verifier, and "
            "replacing one (a root rotation) is not supported yet"
        )
    if kid in doc.revoked:
        return doc
    valid = [c.kid for c in valid_online(doc, now)]
    if valid == [kid] and not force:
        raise UserError(
            f"key {kid} is the only valid online key: revoked, the origin signs nothing "
            "that mirrors, the monitor or clients accept until a new key is certified. "
            "Rotate first (`mirrorfleet keys rotate`), or pass --force when the key is "
            "compromised and stopping every update is the point"
        )
    return _next(
        doc,
        now,
        online=tuple(c for c in doc.online if c.kid != kid),
        revoked=tuple(sorted({*doc.revoked, kid})),
        expires=max(doc.expires, now),  # never later than it was: a revocation extends nothing
    )


# The head TXT record (zone/records.py): what a client that pins only the roots needs
# to find and check the current keys document. Wiring it into head_rrset is to come.


def head_pointer(doc: KeysDocument) -> list[tuple[str, str]]:
    """The TXT strings naming this document: kv=<version> kd=<16 hex of its digest>."""
    return [
        (HEAD_VERSION_FIELD, str(doc.version)),
        (HEAD_DIGEST_FIELD, doc.digest[:HEAD_DIGEST_HEX]),
    ]


def check_head_pointer(doc: KeysDocument, fields: Mapping[str, str]) -> None:
    """BadSignature when a keys document fetched from a mirror is older than the one
    the head names, or differs from it under the same version. A newer one is fine
    (the head lags a publish); a head without the fields names nothing."""
    if HEAD_VERSION_FIELD not in fields:
        return
    try:
        version = int(fields[HEAD_VERSION_FIELD])
    except ValueError:
        raise BadSignature(f"head {HEAD_VERSION_FIELD}= is not a number") from None
    if doc.version < version:
        raise BadSignature(
            f"keys document version {doc.version} is older than version {version} "
            "the head names: a stale mirror, or a rollback"
        )
    if doc.version == version and fields.get(HEAD_DIGEST_FIELD) != doc.digest[:HEAD_DIGEST_HEX]:
        raise BadSignature(f"keys document version {version} is not the one the head names")
