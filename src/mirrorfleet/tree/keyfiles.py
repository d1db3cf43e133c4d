"""The files behind the keys document (tree/trust.py): the offline root folder, the
keys.json the secrets folder keeps, and an online key's rotation on disk.

The root folder is the operator's, kept apart from the fleet's secrets folder (on a
stick, in a safe; with a threshold of several, the keys may live in several
places): `root-1.key` ... (0600 PEM), `root-1.pub` ..., and `roots.json`, the public
root keys and threshold every verifier pins. The secrets folder keeps the online key
(`origin-signing.key`, tree/keys.py) and `keys.json`, the current signed keys
document a deploy copies to the origin. Private files are 0600 from creation and
every file appears whole (tree/files.py atomic_write).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.errors import UserError
from mirrorfleet.tree.files import atomic_write
from mirrorfleet.tree.keys import (
    SIGNING_KEY,
    SecretsDir,
    _write_private,
    key_id,
    load_signing_key,
    parse_public_key,
    public_key_text,
)
from mirrorfleet.tree.signed import BadSignature
from mirrorfleet.tree.trust import MAX_ROOTS, KeysDocument, new_document, parse_keys

ROOTS_FILE = "roots.json"
ROOTS_TYPE = "mirrorfleet-roots"
KEYS_FILE = "keys.json"
NEW_KEY = f"{SIGNING_KEY}.new"  # a rotation's new key until it is installed


def root_key_name(n: int) -> str:
    return f"root-{n}.key"


def root_pub_name(n: int) -> str:
    return f"root-{n}.pub"


def private_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class RootSet:
    """What roots.json says, and what every verifier pins: root keys and threshold."""

    keys: tuple[str, ...]
    threshold: int

    @property
    def publics(self) -> list[Ed25519PublicKey]:
        return [parse_public_key(k) for k in self.keys]

    @property
    def ids(self) -> list[str]:
        return [key_id(k) for k in self.publics]

    def text(self) -> bytes:
        data = {"type": ROOTS_TYPE, "roots": list(self.keys), "threshold": self.threshold}
        return (json.dumps(data, indent=1) + "\n").encode()

    @classmethod
    def parse(cls, raw: bytes, where: Path) -> RootSet:
        try:
            data = json.loads(raw)
            if data["type"] != ROOTS_TYPE:
                raise ValueError(f"type {data['type']!r}")
            roots = cls(tuple(str(k) for k in data["roots"]), int(data["threshold"]))
            check_root_set(len(roots.publics), roots.threshold)
        except (ValueError, KeyError, TypeError, UserError) as exc:
            raise UserError(f"{where} is not a root set: {exc}") from None
        return roots


def check_root_set(count: int, threshold: int) -> None:
    if not 1 <= count <= MAX_ROOTS:
        raise UserError(f"--count {count} is not between 1 and {MAX_ROOTS}")
    if not 1 <= threshold <= count:
        raise UserError(f"--threshold {threshold} is not between 1 and --count {count}")


@dataclass(frozen=True)
class RootDir:
    """The offline folder of root keys."""

    path: Path

    def key_file(self, n: int) -> Path:
        return self.path / root_key_name(n)

    def pub_file(self, n: int) -> Path:
        return self.path / root_pub_name(n)

    @property
    def roots_file(self) -> Path:
        return self.path / ROOTS_FILE

    def read(self) -> RootSet:
        try:
            raw = self.roots_file.read_bytes()
        except FileNotFoundError:
            raise UserError(
                f"{self.path} holds no root set ({ROOTS_FILE}): "
                f"run `mirrorfleet keys root init --dir {self.path}`"
            ) from None
        return RootSet.parse(raw, self.roots_file)

    def signing_keys(self, roots: RootSet) -> list[Ed25519PrivateKey]:
        """The root private keys present in the folder, at least the threshold; the
        others may be kept elsewhere (that is what a threshold is for)."""
        wanted = set(roots.ids)
        found: dict[str, Ed25519PrivateKey] = {}
        for path in sorted(self.path.glob("root-*.key")):
            key = load_signing_key(path)
            if key_id(key.public_key()) in wanted:
                found[key_id(key.public_key())] = key
        if len(found) < roots.threshold:
            raise UserError(
                f"{self.path} holds {len(found)} of the {len(wanted)} root keys, and "
                f"{roots.threshold} must sign: bring the others' root-N.key files in"
            )
        return list(found.values())


def init_roots(
    path: Path, count: int | None, threshold: int | None, dry_run: bool = False
) -> tuple[list[str], RootSet | None]:
    """Make the root keys and roots.json; never overwrite. Returns the names created
    (or, dry_run, that would be) and the root set (None when a dry run would make it).

    An existing root set is kept as it is: asked for another count or threshold, this
    refuses, since that is a root rotation. An interrupted run (keys, no roots.json)
    keeps the keys it made and makes the rest. The default threshold is a majority.
    """
    folder = RootDir(path)
    if folder.roots_file.exists():
        roots = folder.read()
        if (count is not None and count != len(roots.keys)) or (
            threshold is not None and threshold != roots.threshold
        ):
            raise UserError(
                f"{path} holds a root set of {len(roots.keys)} key(s), threshold "
                f"{roots.threshold}; changing it is a root rotation, which is not supported yet"
            )
        return [], roots
    count = 1 if count is None else count
    threshold = count // 2 + 1 if threshold is None else threshold
    check_root_set(count, threshold)
    if not dry_run:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
    created: list[str] = []
    publics: list[str] = []
    for n in range(1, count + 1):
        if folder.key_file(n).exists():
            key = load_signing_key(folder.key_file(n))
        else:
            key = Ed25519PrivateKey.generate()
            created.append(root_key_name(n))
            if not dry_run:
                _write_private(folder.key_file(n), private_pem(key))
        publics.append(public_key_text(key))
        if not folder.pub_file(n).exists() or root_key_name(n) in created:
            created.append(root_pub_name(n))
            if not dry_run:
                atomic_write(folder.pub_file(n), (publics[-1] + "\n").encode(), mode=0o644)
    if len(set(publics)) != len(publics):
        raise UserError(f"{path} holds the same root key twice")
    roots = RootSet(tuple(publics), threshold)
    created.append(ROOTS_FILE)
    if dry_run:
        return created, None if any(n.endswith(".key") for n in created) else roots
    atomic_write(folder.roots_file, roots.text(), mode=0o644)  # last: marks the set whole
    return created, roots


def keys_file(secrets: SecretsDir) -> Path:
    return secrets.path / KEYS_FILE


def old_key_file(secrets: SecretsDir, kid: str) -> Path:
    return secrets.path / f"{SIGNING_KEY}.{kid}.old"


def new_key_file(secrets: SecretsDir) -> Path:
    return secrets.path / NEW_KEY


def online_key(secrets: SecretsDir) -> Ed25519PrivateKey:
    if not secrets.signing_key.exists():
        raise UserError(
            f"{secrets.path} has no {SIGNING_KEY}: run `mirrorfleet keys init --dir {secrets.path}`"
        )
    return load_signing_key(secrets.signing_key)


def read_document(secrets: SecretsDir, roots: RootSet, now: int) -> KeysDocument:
    """The secrets folder's keys.json, verified against the offline folder's roots
    (an expired one too: renewing it is the point), or version 0 when there is none."""
    try:
        raw = keys_file(secrets).read_bytes()
    except FileNotFoundError:
        return new_document(roots.publics, roots.threshold)
    try:
        return parse_keys(raw, roots.publics, roots.threshold, now, check_expiry=False)
    except BadSignature as exc:
        raise UserError(
            f"{keys_file(secrets)} does not verify against the root set: {exc}"
        ) from None


def write_document(secrets: SecretsDir, raw: bytes) -> bool:
    """Public (0644): the deploy copies it to the origin, which publishes it."""
    return atomic_write(keys_file(secrets), raw, mode=0o644, unless_same=True)


def pending_key(secrets: SecretsDir, dry_run: bool = False) -> tuple[Ed25519PrivateKey, bool]:
    """A rotation's new key and whether it was there already: an interrupted rotation
    resumes with the key it certified, rather than certifying yet another."""
    path = new_key_file(secrets)
    if path.exists():
        return load_signing_key(path), True
    key = Ed25519PrivateKey.generate()
    if not dry_run:
        _write_private(path, private_pem(key))
    return key, False


def install_pending(secrets: SecretsDir) -> Path:
    """Make the rotation's new key the online key. The old one is kept as
    origin-signing.key.<kid>.old (0600; a hard link, so never a moment without it),
    then the new one renamed over it; then the .pub. Returns the old key's path."""
    current = load_signing_key(secrets.signing_key)
    new = load_signing_key(new_key_file(secrets))
    old = old_key_file(secrets, key_id(current.public_key()))
    if key_id(current.public_key()) != key_id(new.public_key()) and not old.exists():
        try:
            os.link(secrets.signing_key, old)
        except OSError:  # no hard links on this file system: a private copy
            _write_private(old, secrets.signing_key.read_bytes())
    os.replace(new_key_file(secrets), secrets.signing_key)
    atomic_write(secrets.public_key, (public_key_text(new) + "\n").encode(), mode=0o644)
    return old


@dataclass(frozen=True)
class Anchors:
    """What a deploy pins on every verifier, from the control node's secrets folder:
    the roots and their threshold once `keys certify` wrote keys.json, else the
    origin's own public key (a fleet without an offline root)."""

    keys: tuple[str, ...]
    threshold: int
    document: Path | None  # keys.json, for the origin to publish


def fleet_anchors(secrets: SecretsDir) -> Anchors:
    try:
        raw = keys_file(secrets).read_bytes()
    except FileNotFoundError:
        return Anchors((secrets.public_key.read_text().strip(),), 1, None)
    try:
        listed = KeysDocument.from_signed(json.loads(raw)["signed"])
        roots = [parse_public_key(r) for r in listed.roots]
        # the operator's own file, signed by the roots it lists; an expired one still
        # names the roots to pin (its verifiers refuse it until it is renewed)
        doc = parse_keys(raw, roots, listed.threshold, 0, check_expiry=False)
    except (ValueError, KeyError, TypeError, BadSignature) as exc:
        raise UserError(
            f"{keys_file(secrets)} is not a keys document its roots signed: {exc}"
        ) from None
    return Anchors(doc.roots, doc.threshold, keys_file(secrets))
