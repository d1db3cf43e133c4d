"""The stamp: the origin's signed statement "the tree is at serial N, made at T, good
until E, and its metadata is exactly these bytes".

- `snapshot` is the sha256 of the serial's signed snapshot (tree/snapshot.py), which
  names every manifest shard by hash: a shard from another serial does not match.
- `record` is the sha256 of the serial's change record, whose `prev` chains the
  records before it: a record from another publish does not match.
- `keys` is the version of the root-signed keys document (tree/trust.py) the origin
  serves: a verifier holding an older one fetches it before it trusts the signer,
  so a revocation reaches every verifier with the next heartbeat.
- `expires`: the origin re-signs its stamp on a timer (the heartbeat: same serial,
  new `ts` and `expires`), so a mirror, or a DNS answer, that keeps serving an old
  stamp goes stale on every verifier's own clock, however valid its signature.

It is small on purpose: the same fields go into the head TXT record in DNS, so a
client can check the signature of either.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.config import STAMP_LIFETIME
from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.tree.files import META_DIR
from mirrorfleet.tree.signed import BadSignature, sign, verify

STAMP_PATH = f"{META_DIR}/stamp.json"
STAMP_VERSION = 2
# A signed stamp is a few hundred bytes (serial, times, two sha256, a signature).
# Anything near this is not a stamp.
MAX_STAMP = 64 * 1024
SHA256_HEX = 64
# what a stamp names when there is no document: the sha256 of no bytes, which no
# snapshot or record has (readers then refuse, or walk the whole tree)
NOTHING = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


class StampUnavailable(MirrorfleetError):
    """A tree's stamp could not be fetched or did not verify.

    `missing`: HTTP 404. `rejected`: it answered with something that is not a valid
    stamp, or (`certificate`) over TLS with a certificate that does not verify. Either
    way the server answered, unlike a timeout or a refused connection.
    """

    def __init__(
        self, message: str, missing: bool = False, rejected: bool = False, certificate: bool = False
    ) -> None:
        super().__init__(message)
        self.missing, self.certificate = missing, certificate
        self.rejected = rejected or certificate

    @property
    def answered(self) -> bool:
        return self.missing or self.rejected


@dataclass(frozen=True)
class Stamp:
    serial: int
    ts: int
    origin: str
    expires: int = 0
    snapshot: str = NOTHING  # sha256 (hex) of this serial's snapshot
    record: str = NOTHING  # sha256 (hex) of this serial's change record
    keys: int = 0  # version of the keys document the origin serves (0: none)
    v: int = STAMP_VERSION

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        return sign(self.signed(), key)

    def signed(self) -> dict[str, object]:
        """The content the signature covers (the head TXT carries the same fields)."""
        return asdict(self)

    @classmethod
    def new(
        cls,
        serial: int,
        origin: str,
        snapshot: str = NOTHING,
        record: str = NOTHING,
        lifetime: int = STAMP_LIFETIME,
        keys: int = 0,
    ) -> Stamp:
        now = int(time.time())
        return cls(serial, now, origin, now + lifetime, snapshot, record, keys)

    def renewed(self, lifetime: int, now: float | None = None, keys: int | None = None) -> Stamp:
        """The heartbeat: the same serial and metadata, signed again at `now` (naming
        the keys document's version, which a revocation moves between publishes)."""
        ts = int(time.time() if now is None else now)
        return replace(self, ts=ts, expires=ts + lifetime, keys=self.keys if keys is None else keys)

    def expired(self, now: float | None = None) -> bool:
        """On the verifier's own clock: the origin's clock set `expires`, and each
        verifier trusts only its own clock to say when that is past."""
        return (time.time() if now is None else now) >= self.expires

    def expiry_problem(self, now: float | None = None) -> str | None:
        """Why the stamp no longer counts as fresh, for messages; None while it does."""
        now = time.time() if now is None else now
        if not self.expired(now):
            return None
        return (
            f"stamp of serial {self.serial} expired at {_utc(self.expires)} (this clock: "
            f"{_utc(now)}): the origin's heartbeat did not reach it (a frozen mirror, a "
            "replayed answer, a stopped origin, or this clock is wrong)"
        )


def _utc(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def stamp_from_fields(data: Mapping[str, object]) -> Stamp:
    """A stamp from its signed fields (the JSON or the head TXT), checked for shape;
    BadSignature when one is missing or malformed."""
    try:
        stamp = Stamp(
            serial=_int(data["serial"]),
            ts=_int(data["ts"]),
            origin=str(data["origin"]),
            expires=_int(data["expires"]),
            snapshot=str(data["snapshot"]),
            record=str(data["record"]),
            keys=_int(data["keys"]),
            v=_int(data["v"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadSignature(f"stamp lacks a valid field: {exc}") from None
    if stamp.v != STAMP_VERSION or stamp.serial < 0:
        raise BadSignature(
            f"unsupported stamp (v={stamp.v}, serial={stamp.serial}): this version reads "
            f"v{STAMP_VERSION}, which expires and names its snapshot"
        )
    if stamp.keys < 0:
        raise BadSignature(f"stamp names keys document version {stamp.keys}")
    if stamp.expires <= stamp.ts:
        raise BadSignature(f"stamp of serial {stamp.serial} expires before it was made")
    for name in ("snapshot", "record"):
        value = getattr(stamp, name)
        if len(value) != SHA256_HEX or value.strip("0123456789abcdef"):
            raise BadSignature(f"stamp's {name} is not a sha256: {value[:70]!r}")
    return stamp


def _int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)  # type: ignore[call-overload]


def parse_stamp(raw: bytes, keys: Sequence[Ed25519PublicKey]) -> Stamp:
    """Verify and parse; BadSignature for anything that is not a valid stamp."""
    return stamp_from_fields(verify(raw, keys))


def read_local_stamp(tree: Path, keys: Sequence[Ed25519PublicKey]) -> Stamp | None:
    """The stamp a tree serves now; None when there is none yet."""
    try:
        raw = (tree / STAMP_PATH).read_bytes()
    except FileNotFoundError:
        return None
    return parse_stamp(raw, keys)


def fetch_stamp(
    base_url: str, keys: Sequence[Ed25519PublicKey], timeout: float = 10
) -> tuple[Stamp, bytes]:
    """A served tree's stamp over HTTP, verified: what agents and the monitor both see."""
    from mirrorfleet import web  # here: `origin publish` reads only local stamps, faster

    url = f"{base_url.rstrip('/')}/{STAMP_PATH}"
    try:
        answer = web.get(url, MAX_STAMP, timeout)
    except web.READ_ERRORS as exc:
        bad_certificate = web.certificate_error(exc)
        if bad_certificate:  # the server answered, with a certificate no client takes
            raise StampUnavailable(f"stamp {url}: {bad_certificate}", certificate=True) from None
        raise StampUnavailable(f"stamp {url} unreachable: {exc}") from None
    if answer.status == 404:
        raise StampUnavailable(f"{url} has no stamp yet", missing=True)
    if answer.status != 200:
        raise StampUnavailable(f"stamp {url}: HTTP {answer.status}")
    if answer.over(MAX_STAMP):
        raise StampUnavailable(f"stamp {url} is larger than {MAX_STAMP} bytes", rejected=True)
    raw = answer.body
    try:
        return parse_stamp(raw, keys), raw
    except BadSignature as exc:
        # a keyring (tree/trust.py) says why a signer is not trusted: revoked, ended...
        explain = getattr(keys, "explain", None)
        why = explain(exc) if explain else str(exc)
        raise StampUnavailable(f"stamp {url} rejected: {why}", rejected=True) from None
