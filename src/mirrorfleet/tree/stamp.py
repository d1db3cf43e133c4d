"""The stamp: the origin's signed statement "the tree is at serial N, made at T".

It is small on purpose: the same fields go into the head TXT record in DNS, so a
client can check the signature of either.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.errors import MirrorfleetError
from mirrorfleet.tree.files import META_DIR
from mirrorfleet.tree.signed import BadSignature, sign, verify

STAMP_PATH = f"{META_DIR}/stamp.json"
STAMP_VERSION = 1
# A signed stamp is a few hundred bytes (serial, ts, origin, a signature); even one
# naming all 256 shards' sha256 (~20 KB) fits. Anything bigger is not a stamp.
MAX_STAMP = 64 * 1024


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
    v: int = STAMP_VERSION

    def sign(self, key: Ed25519PrivateKey) -> bytes:
        return sign(asdict(self), key)

    @classmethod
    def new(cls, serial: int, origin: str) -> Stamp:
        return cls(serial=serial, ts=int(time.time()), origin=origin)


def parse_stamp(raw: bytes, keys: Sequence[Ed25519PublicKey]) -> Stamp:
    """Verify and parse; BadSignature for anything that is not a valid stamp."""
    data = verify(raw, keys)
    try:
        stamp = Stamp(
            serial=int(data["serial"]),
            ts=int(data["ts"]),
            origin=str(data["origin"]),
            v=int(data["v"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadSignature(f"stamp lacks a valid field: {exc}") from None
    if stamp.v != STAMP_VERSION or stamp.serial < 0:
        raise BadSignature(f"unsupported stamp (v={stamp.v}, serial={stamp.serial})")
    return stamp


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
    import urllib.error  # here: `origin publish` reads only local stamps and starts faster
    import urllib.request

    from mirrorfleet import web

    url = f"{base_url.rstrip('/')}/{STAMP_PATH}"
    request = urllib.request.Request(url, headers={"Cache-Control": "no-cache"})
    try:
        with web.urlopen(request, timeout=timeout) as response:
            raw = response.read(MAX_STAMP + 1)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise StampUnavailable(f"{url} has no stamp yet", missing=True) from None
        raise StampUnavailable(f"stamp {url}: HTTP {exc.code}") from None
    except web.READ_ERRORS as exc:
        bad_certificate = web.certificate_error(exc)
        if bad_certificate:  # the server answered, with a certificate no client takes
            raise StampUnavailable(f"stamp {url}: {bad_certificate}", certificate=True) from None
        raise StampUnavailable(f"stamp {url} unreachable: {exc}") from None
    if len(raw) > MAX_STAMP:
        raise StampUnavailable(f"stamp {url} is larger than {MAX_STAMP} bytes", rejected=True)
    try:
        return parse_stamp(raw, keys), raw
    except BadSignature as exc:
        raise StampUnavailable(f"stamp {url} rejected: {exc}", rejected=True) from None
