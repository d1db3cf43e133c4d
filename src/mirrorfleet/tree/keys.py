"""The fleet's secrets: the origin's Ed25519 signing key, the shared ping secret and
the DNS TSIG keys (one per writer: the monitor's for the fleet's records, the DNS
primary's own for the hosts' address records, the one secondaries transfer with,
and one per host that answers ACME DNS-01 challenges, for its own challenge name).

Made on the control node by `mirrorfleet keys init` into a folder the inventory
names (never committed); a host's ACME key is made by the first deploy that needs
it. The roles copy each host only what it needs.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mirrorfleet.errors import UserError

SIGNING_KEY = "origin-signing.key"
PUBLIC_KEY = "origin-signing.pub"
PING_SECRET = "ping.secret"
# TSIG keys, by the key name BIND and the publisher know them under -> file name.
TSIG_KEYS = {
    "mirrorfleet-monitor": "tsig-monitor.key",
    "mirrorfleet-transfer": "tsig-transfer.key",
    "mirrorfleet-hosts": "tsig-hosts.key",
}
MONITOR_TSIG, TRANSFER_TSIG, HOSTS_TSIG = TSIG_KEYS
ACME_TSIG_PREFIX = "mirrorfleet-acme."


def acme_tsig_name(host_name: str) -> str:
    """The TSIG key one host's certbot writes its `_acme-challenge` TXT with: named
    after the host, so the key name says whose it is (BIND key names are DNS names)."""
    return ACME_TSIG_PREFIX + host_name.rstrip(".").lower()


@dataclass(frozen=True)
class SecretsDir:
    path: Path

    @property
    def signing_key(self) -> Path:
        return self.path / SIGNING_KEY

    @property
    def public_key(self) -> Path:
        return self.path / PUBLIC_KEY

    @property
    def ping_secret(self) -> Path:
        return self.path / PING_SECRET

    def tsig(self, key_name: str) -> Path:
        if key_name.startswith(ACME_TSIG_PREFIX):
            return self.path / f"tsig-acme-{key_name.removeprefix(ACME_TSIG_PREFIX)}.key"
        return self.path / TSIG_KEYS[key_name]

    def ensure_tsig(self, key_name: str) -> str:
        """A host's ACME key: made (0600) the first time a deploy needs it, then kept."""
        # made before, or by another host's deploy a moment ago: kept as it is
        with contextlib.suppress(FileExistsError):
            _write_private(self.tsig(key_name), (tsig_secret() + "\n").encode())
        return self.tsig_secret(key_name)

    def tsig_secret(self, key_name: str) -> str:
        """The base64 secret as BIND's key statement and dnspython's keyring take it."""
        return read_secret(self.tsig(key_name)).decode()

    def require(self) -> None:
        needed = [self.signing_key, self.public_key, self.ping_secret]
        missing = [p.name for p in needed + [self.tsig(k) for k in TSIG_KEYS] if not p.exists()]
        if missing:
            raise UserError(
                f"secrets folder {self.path} lacks {', '.join(missing)}: "
                f"run `mirrorfleet keys init --dir {self.path}`"
            )


def _write_private(path: Path, data: bytes) -> None:
    """Create with 0600 from the start: the secret is never readable by others."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def init_secrets(path: Path) -> list[str]:
    """Create whatever is missing; never overwrite. Returns the names created."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    folder, created = SecretsDir(path), []
    if not folder.signing_key.exists():
        key = Ed25519PrivateKey.generate()
        _write_private(
            folder.signing_key,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        created.append(SIGNING_KEY)
    if not folder.public_key.exists() or SIGNING_KEY in created:
        folder.public_key.write_text(public_key_text(load_signing_key(folder.signing_key)) + "\n")
        created.append(PUBLIC_KEY)
    if not folder.ping_secret.exists():
        _write_private(folder.ping_secret, (secrets.token_hex(32) + "\n").encode())
        created.append(PING_SECRET)
    for key_name, file_name in TSIG_KEYS.items():
        if not folder.tsig(key_name).exists():
            # 256 bits, the HMAC-SHA256 block-size guidance BIND's tsig-keygen follows
            _write_private(folder.tsig(key_name), (tsig_secret() + "\n").encode())
            created.append(file_name)
    return created


def tsig_secret() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load signing key {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path} is not an Ed25519 private key")
    return key


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """A public key as one line of base64: short enough for config files and DNS."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise UserError(f"bad Ed25519 public key {text.strip()[:20]!r}...: {exc}") from None


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def read_secret(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise UserError(f"cannot read secret {path}: {exc.strerror}") from None
    if len(text) < 32:
        raise UserError(f"secret {path} is too short (at least 32 characters)")
    return text.encode()
