"""The small HTTP side of the agent and the monitor: authenticated POST /ping, and
GET routes such as /metrics and /status. One handler serves both daemons."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from mirrorfleet.notify.ping import HEADER, MAX_BODY, BadPing, PingVerifier

Reply = tuple[int, bytes, str]  # status, body, content type
# Seconds a connection may sit idle mid-request: a sender that announces a body and
# stops (or never ends its headers) is dropped, instead of holding a thread forever.
READ_TIMEOUT = 10.0
Route = Callable[[], Reply]


def json_reply(data: object, status: int = HTTPStatus.OK) -> Reply:
    return status, json.dumps(data).encode(), "application/json"


def metrics_route(registry: CollectorRegistry) -> Route:
    return lambda: (HTTPStatus.OK, generate_latest(registry), CONTENT_TYPE_LATEST)


def make_handler(
    name: str,
    verifier: PingVerifier,
    on_ping: Callable[[dict[str, Any]], None],
    pings: Counter,
    routes: Mapping[str, Route],
    log: logging.Logger,
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = name
        timeout = READ_TIMEOUT  # socketserver sets it on the connection

        def log_message(self, format: str, *args: object) -> None:
            log.debug("%s " + format, self.client_address[0], *args)

        def _reply(self, reply: Reply) -> None:
            status, body, content_type = reply
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            if self.path != "/ping":
                return self._reply(json_reply({"error": "not found"}, HTTPStatus.NOT_FOUND))
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0:  # read(-1) would read until the sender stops: unbounded
                bad = HTTPStatus.BAD_REQUEST
                return self._reply(json_reply({"error": "bad Content-Length"}, bad))
            if length > MAX_BODY:
                too_large = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
                return self._reply(json_reply({"error": "too large"}, too_large))
            body = self.rfile.read(length)
            try:
                payload = verifier.check(self.headers.get(HEADER), body)
            except BadPing as exc:
                pings.labels("rejected").inc()
                log.warning("rejected ping from %s: %s", self.client_address[0], exc)
                return self._reply(json_reply({"error": "unauthorized"}, HTTPStatus.UNAUTHORIZED))
            pings.labels("accepted").inc()
            log.info("ping from %s: %s", self.client_address[0], payload)
            on_ping(payload)
            return self._reply(json_reply({"queued": True}, HTTPStatus.ACCEPTED))

        def do_GET(self) -> None:
            route = routes.get(self.path)
            if route is None:
                return self._reply(json_reply({"error": "not found"}, HTTPStatus.NOT_FOUND))
            return self._reply(route())

    return Handler


def serve_http(
    address: tuple[str, int], handler: type[BaseHTTPRequestHandler]
) -> ThreadingHTTPServer:
    """Listen in a daemon thread; the caller shuts the server down."""
    server = ThreadingHTTPServer(address, handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="listener", daemon=True).start()
    return server
