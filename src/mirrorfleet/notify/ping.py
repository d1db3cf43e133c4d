"""Authenticated "look now" pings between origin, mirrors and monitor.

A ping carries nothing the receiver must trust beyond "something changed": the
receiver fetches and verifies the signed stamp itself. The HMAC (shared secret)
over timestamp, nonce and body keeps strangers from triggering work, and the
timestamp window plus nonce cache rejects replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from mirrorfleet import web
from mirrorfleet.errors import MirrorfleetError

HEADER = "X-Mirrorfleet-Auth"
WINDOW = 60  # seconds a ping may be early or late
MAX_BODY = 4096


class BadPing(MirrorfleetError):
    """Unauthenticated, replayed or malformed."""


def _mac(secret: bytes, ts: str, nonce: str, body: bytes) -> str:
    return hmac.new(secret, f"{ts}.{nonce}.".encode() + body, hashlib.sha256).hexdigest()


def auth_header(secret: bytes, body: bytes, now: float | None = None) -> str:
    ts, nonce = str(int(now if now is not None else time.time())), secrets.token_hex(16)
    return f"ts={ts},nonce={nonce},mac={_mac(secret, ts, nonce, body)}"


class PingVerifier:
    def __init__(self, secret: bytes, window: int = WINDOW, max_nonces: int = 10_000) -> None:
        self.secret, self.window, self.max_nonces = secret, window, max_nonces
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def check(self, header: str | None, body: bytes, now: float | None = None) -> dict[str, Any]:
        """Return the ping's JSON body, or raise BadPing."""
        now = time.time() if now is None else now
        if not header:
            raise BadPing(f"missing {HEADER} header")
        if len(body) > MAX_BODY:
            raise BadPing("body too large")
        try:
            fields = dict(part.split("=", 1) for part in header.split(","))
            ts, nonce, mac = fields["ts"], fields["nonce"], fields["mac"]
            age = now - int(ts)
        except (ValueError, KeyError):
            raise BadPing("malformed auth header") from None
        if not hmac.compare_digest(mac, _mac(self.secret, ts, nonce, body)):
            raise BadPing("bad MAC")
        if abs(age) > self.window:
            raise BadPing(f"timestamp outside the {self.window}s window ({age:+.0f}s)")
        with self._lock:
            for old, seen_at in list(self._seen.items()):
                if now - seen_at <= 2 * self.window and len(self._seen) < self.max_nonces:
                    break
                del self._seen[old]
            if nonce in self._seen:
                raise BadPing("replayed nonce")
            self._seen[nonce] = now
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            raise BadPing("body is not JSON") from None
        if not isinstance(payload, dict):
            raise BadPing("body is not a JSON object")
        return payload


def send_ping(url: str, secret: bytes, payload: Mapping[str, Any], timeout: float = 5) -> int:
    """POST a ping; return the HTTP status (0 when unreachable). Never raises."""
    body = json.dumps(dict(payload), sort_keys=True).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={HEADER: auth_header(secret, body), "Content-Type": "application/json"},
    )
    try:
        with web.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except web.READ_ERRORS:
        return 0
