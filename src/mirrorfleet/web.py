"""HTTP and HTTPS reads for every part of the fleet, under one TLS policy.

Mirrors serve HTTPS (issue 17), so every read verifies the server's certificate for
the host name in the URL. The trust comes from, in this order:
- a CA file the operator names (`--ca-file`, the monitor's `ca_file`): only it;
- `SSL_CERT_FILE` (OpenSSL reads it itself) or `REQUESTS_CA_BUNDLE`, as pip and
  requests honour them;
- the system's trust store.

The context is built once per process: urllib would otherwise build one, and load
the whole trust store, for every request.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path
from urllib.parse import urlsplit

from mirrorfleet.errors import UserError

# What reading an answer can raise besides HTTPError: the socket's errors and
# timeouts (OSError), a bad URL (ValueError), and http.client's refusals of a
# malformed or endless answer (HTTPException: a status or header line over 64 KiB,
# more than 100 headers, a broken chunked body), which are not OSErrors. Every read
# catches all three, so a hostile server's answer is a refusal, never a crash.
READ_ERRORS = (OSError, ValueError, http.client.HTTPException)

_lock = threading.Lock()
_ca_file: Path | None = None
_context: ssl.SSLContext | None = None


def use_ca_file(path: Path | str | None) -> None:
    """Trust only this CA file (PEM) from now on; None: back to the defaults."""
    global _ca_file, _context
    ca = Path(path) if path else None
    if ca is not None and not ca.is_file():
        raise UserError(f"CA file {ca} does not exist")
    with _lock:
        _ca_file, _context = ca, None


def context() -> ssl.SSLContext:
    """The process's TLS context (see the module docstring)."""
    global _context
    with _lock:
        if _context is None:
            cafile = _ca_file or _env_bundle()
            try:
                _context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
            except (OSError, ssl.SSLError) as exc:
                raise UserError(f"CA file {cafile} is unusable: {exc}") from None
        return _context


def _env_bundle() -> Path | None:
    if os.environ.get("SSL_CERT_FILE"):
        return None  # OpenSSL loads it with the default paths
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    return Path(bundle) if bundle else None


def urlopen(request: urllib.request.Request | str, timeout: float) -> HTTPResponse:
    """urllib's urlopen with the process's TLS context."""
    return urllib.request.urlopen(request, timeout=timeout, context=context())


@dataclass(frozen=True)
class Answer:
    """What a bounded GET got: an HTTP error status has no body."""

    status: int
    body: bytes = b""
    modified: str | None = None  # Last-Modified

    def over(self, limit: int) -> bool:
        return len(self.body) > limit


def get(url: str, limit: int, timeout: float) -> Answer:
    """GET without caches, reading at most limit + 1 bytes of the body: one more than
    any reader takes, so it can tell an answer over its limit and refuse it. The
    fleet's one way to read a signed document or a page; READ_ERRORS for no answer."""
    request = urllib.request.Request(url, headers={"Cache-Control": "no-cache"})
    try:
        with urlopen(request, timeout) as response:
            body = response.read(limit + 1)
            return Answer(response.status, body, response.headers.get("Last-Modified"))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code)


def certificate_error(exc: BaseException) -> str | None:
    """What is wrong with the server's certificate, when that is why a read failed
    (a wrong name, a self-signed or expired certificate); None for anything else."""
    reason = getattr(exc, "reason", exc)  # urllib wraps it in a URLError
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"certificate: {reason.verify_message or reason}"
    return None


def certificate_expiry(url: str, timeout: float) -> float | None:
    """When the certificate an https URL's server presents expires (seconds since the
    epoch), verified as every read verifies it; None for plain http. OSError, with
    ssl.SSLCertVerificationError for a certificate that does not verify."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return None
    address = (parts.hostname, parts.port or 443)
    with (
        socket.create_connection(address, timeout=timeout) as raw,
        context().wrap_socket(raw, server_hostname=parts.hostname) as tls,
    ):
        cert = tls.getpeercert()
    if not cert or "notAfter" not in cert:
        raise ssl.SSLError(f"{parts.hostname}: the server's certificate has no end date")
    return float(ssl.cert_time_to_seconds(str(cert["notAfter"])))
