"""HTTPS for a host's nginx: a certificate for its public name, from an ACME CA by
certbot or the operator's own. The CA checks the name by HTTP-01, answered by the
host's own nginx, or (`acme_challenge` "dns-01") by DNS-01: certbot's RFC 2136
plugin writes the TXT record at the fleet's BIND primary with a TSIG key that may
write that one name's `_acme-challenge` TXT and nothing else (roles/dns grants it;
only this host holds it).

nginx reads the certificate through two links that never move (CERTIFICATE, KEY),
so a site is written once whatever the source. On the very first deploy nginx must
serve the challenge before the CA has signed anything, so until certbot has a
certificate the links point to a self-signed one made on the host: no client trusts
it, and the monitor lists no mirror that serves it.

Renewal is certbot's own timer; its deploy hook reloads nginx only when a new
certificate was issued. The roles call site_data() and obtain() around nginx.site().
"""

from __future__ import annotations

import datetime
import shlex
from io import StringIO
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyinfra import host, inventory
from pyinfra.api import FactBase
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from mirrorfleet.errors import UserError
from mirrorfleet.tree.keys import acme_tsig_name
from mirrorfleet_roles import dns, fleet

TLS_DIR = "/etc/mirrorfleet/tls"
CERTIFICATE, KEY = f"{TLS_DIR}/fullchain.pem", f"{TLS_DIR}/privkey.pem"
BOOTSTRAP = {CERTIFICATE: f"{TLS_DIR}/bootstrap.crt", KEY: f"{TLS_DIR}/bootstrap.key"}
OWN = {CERTIFICATE: f"{TLS_DIR}/own-fullchain.pem", KEY: f"{TLS_DIR}/own-privkey.pem"}
CERT_NAME = "mirrorfleet"  # certbot's lineage: /etc/letsencrypt/{live,renewal}/<name>
LIVE = {
    CERTIFICATE: f"/etc/letsencrypt/live/{CERT_NAME}/fullchain.pem",
    KEY: f"/etc/letsencrypt/live/{CERT_NAME}/privkey.pem",
}
WEBROOT = "/var/www/mirrorfleet-acme"  # HTTP-01 tokens, served on port 80
RFC2136_INI = f"{TLS_DIR}/rfc2136.ini"  # DNS-01: certbot's credentials (root, 0600)
CERTBOT, DNS01_PLUGIN = ["certbot"], ["python3-certbot-dns-rfc2136"]
TRUST_DIR = "/usr/local/share/ca-certificates"
TRUST_PREFIX = "mirrorfleet-trust"
RELOAD_NGINX = "systemctl reload nginx.service"
# DNS-01: seconds certbot waits after writing the TXT record before the CA looks; a
# public CA asks the zone's secondaries, which take a NOTIFY and a transfer to learn it.
PROPAGATION = 30


class CertificateNames(FactBase):
    """The DNS names a PEM certificate on the host is for ([] when there is none)."""

    @staticmethod
    def default() -> list[str]:
        return []

    def command(self, path: str) -> str:
        path = shlex.quote(path)
        return f"openssl x509 -in {path} -noout -ext subjectAltName 2>/dev/null || true"

    def process(self, output: list[str]) -> list[str]:
        names = []
        for line in output:
            for item in line.split(","):
                kind, _, value = item.strip().partition(":")
                if kind == "DNS" and value:
                    names.append(value)
        return sorted(names)


def site_data() -> tuple[dict[str, Any], list[OperationMeta]]:
    """What a site template needs to serve HTTPS (all None with tls off), and the
    operations that put in place the certificate nginx reads: a change to one (the
    operator's new certificate) reloads nginx."""
    mode, challenge = fleet.tls_mode(host), fleet.acme_challenge(host)
    if mode == "off":
        return {"tls_certificate": None, "tls_key": None, "acme_webroot": None}, []
    files.directory(name="Create the TLS folder", path=TLS_DIR, mode="0700")
    installed: list[OperationMeta] = []
    if mode == "own":
        installed = _own()
    else:
        by_dns = challenge == "dns-01"
        apt.packages(name="Install certbot", packages=CERTBOT, no_recommends=True)
        if by_dns:
            apt.packages(
                name="Install certbot's RFC 2136 plugin", packages=DNS01_PLUGIN, no_recommends=True
            )
            files.put(
                name="Install certbot's DNS-01 key (root-only, 0600)",
                src=StringIO(rfc2136_credentials()),
                dest=RFC2136_INI,
                mode="0600",
            )
        else:
            files.directory(name="Create the ACME challenge folder", path=WEBROOT, mode="0755")
        if not _issued():
            installed = _bootstrap()
    data = {
        "tls_certificate": CERTIFICATE,
        "tls_key": KEY,
        "acme_webroot": WEBROOT if challenge == "http-01" else None,
    }
    return data, installed


def rfc2136_credentials() -> str:
    """certbot-dns-rfc2136's credentials: the fleet's BIND primary (by address, as
    the plugin needs) and this host's own key, made on the control node on first use."""
    zone = dns.zone_name()
    primaries = [h for h in inventory.get_group("dns", []) if h.data.get("dns_role") == "primary"]
    if not primaries:
        raise DeployError(
            f"{host.name}: acme_challenge dns-01 needs a dns_role='primary' host in group dns"
        )
    key = acme_tsig_name(dns.zone_name_of(host, zone))
    lines = [
        "# Managed by mirrorfleet (roles/tls): certbot's RFC 2136 plugin, DNS-01.",
        f"dns_rfc2136_server = {dns.dns_address(primaries[0])}",
        "dns_rfc2136_port = 53",
        f"dns_rfc2136_name = {key}",
        f"dns_rfc2136_secret = {fleet.secrets().ensure_tsig(key)}",
        "dns_rfc2136_algorithm = HMAC-SHA256",
    ]
    return "\n".join(lines) + "\n"


def obtain() -> list[OperationMeta]:
    """With the site up (it answers the challenge): certbot's certificate, and the
    links moved to it. Returns what must reload nginx."""
    if fleet.tls_mode(host) != "acme":
        return []
    issued = []
    if not _issued():
        command = certonly(fleet.public_name(host))
        issued.append(server.shell(name="Obtain the host's certificate (ACME)", commands=[command]))
    systemd.service(
        name="Run certbot's renewal timer", service="certbot.timer", running=True, enabled=True
    )
    return issued + _links(LIVE)


def _issued() -> bool:
    """certbot already holds a certificate for the host's name (renewing it is
    certbot's timer's job, not the deploy's)."""
    names = host.get_fact(CertificateNames, path=LIVE[CERTIFICATE])
    return fleet.public_name(host) in names


def certonly(name: str) -> str:
    """The certbot command that gets the certificate; rerun, it changes nothing
    (--keep-until-expiring), and the deploy hook it records is what renewals run."""
    argv = [
        "certbot", "certonly", "--non-interactive", "--agree-tos",
        "--cert-name", CERT_NAME, "--keep-until-expiring", "--domain", name,
        "--deploy-hook", RELOAD_NGINX,
    ]  # fmt: skip
    if fleet.acme_challenge(host) == "dns-01":
        wait = str(int(host.data.get("acme_dns_propagation_seconds") or PROPAGATION))
        argv += ["--authenticator", "dns-rfc2136", "--dns-rfc2136-credentials", RFC2136_INI]
        argv += ["--dns-rfc2136-propagation-seconds", wait]
    else:
        argv += ["--webroot", "--webroot-path", WEBROOT]
    if host.data.get("acme_directory"):
        argv += ["--server", host.data.acme_directory]
    email = host.data.get("acme_email")
    argv += ["--email", email] if email else ["--register-unsafely-without-email"]
    return shlex.join(argv)


def _links(targets: dict[str, str]) -> list[OperationMeta]:
    return [
        files.link(name=f"Point nginx's {Path(link).name} at {target}", path=link, target=target)
        for link, target in targets.items()
    ]


def _bootstrap() -> list[OperationMeta]:
    """A self-signed certificate for the first start, until the CA has signed one."""
    name = fleet.public_name(host)
    command = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-days", "7", "-subj", f"/CN={name}",
        "-keyout", BOOTSTRAP[KEY], "-out", BOOTSTRAP[CERTIFICATE],
    ]  # fmt: skip
    server.shell(
        name="Make a self-signed certificate until the CA signs one",
        commands=[f"umask 077 && {shlex.join(command)}"],
    )
    return _links(BOOTSTRAP)


def _own() -> list[OperationMeta]:
    """The operator's certificate and key (tls_certificate, tls_key), checked on the
    control node before any host is touched."""
    cert_path, key_path = host.data.get("tls_certificate"), host.data.get("tls_key")
    if not cert_path or not key_path:
        raise DeployError(f"{host.name}: tls 'own' needs tls_certificate and tls_key")
    cert_pem, key_pem = Path(cert_path).expanduser(), Path(key_path).expanduser()
    try:
        check_own(cert_pem, key_pem, fleet.public_name(host))
    except UserError as exc:
        raise DeployError(f"{host.name}: {exc}") from None
    return [
        files.put(
            name="Install the certificate", src=str(cert_pem), dest=OWN[CERTIFICATE], mode="0644"
        ),
        files.put(
            name="Install the private key (0600)", src=str(key_pem), dest=OWN[KEY], mode="0600"
        ),
        *_links(OWN),
    ]


def check_own(cert_pem: Path, key_pem: Path, name: str) -> None:
    """UserError unless the certificate is for name, has not ended, and the key is
    its key."""
    try:
        cert = x509.load_pem_x509_certificates(cert_pem.read_bytes())[0]
        key = serialization.load_pem_private_key(key_pem.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"tls_certificate/tls_key unreadable: {exc}") from None
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = sans.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    if name not in names:
        raise UserError(f"{cert_pem} is for {names}, not {name}")
    if cert.not_valid_after_utc <= datetime.datetime.now(datetime.UTC):
        raise UserError(f"{cert_pem} ended on {cert.not_valid_after_utc:%Y-%m-%d}")
    spki = (serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if key.public_key().public_bytes(*spki) != cert.public_key().public_bytes(*spki):
        raise UserError(f"{key_pem} is not the key of {cert_pem}")


def trust() -> None:
    """The roots in `tls_trust` (a PEM bundle on the control node: a private CA, or
    the lab's) in the host's trust store, one file per root, which is what
    update-ca-certificates reads; everything on the host (certbot, the agent, the
    monitor, curl) then trusts them."""
    bundle = host.data.get("tls_trust")
    if not bundle:
        return
    try:
        roots = x509.load_pem_x509_certificates(Path(bundle).expanduser().read_bytes())
    except (OSError, ValueError) as exc:
        raise DeployError(f"{host.name}: tls_trust {bundle}: {exc}") from None
    installed = [
        files.put(
            name=f"Trust {root.subject.rfc4514_string()}",
            src=StringIO(root.public_bytes(serialization.Encoding.PEM).decode()),
            dest=f"{TRUST_DIR}/{TRUST_PREFIX}-{i}.crt",
            mode="0644",
        )
        for i, root in enumerate(roots)
    ]
    server.shell(
        name="Update the trust store",
        commands=["update-ca-certificates --fresh >/dev/null"],
        _if=any_changed(*installed),
    )
