"""The proxy on a socket: HTTP/1.1 with kept-alive connections for pip and uv, the
routes of a PEP 503 index, `/status` and `/metrics` for whoever runs it.

The socket is the one systemd passes (socket activation: the proxy starts on the
first request and no port is ever held by nobody), or one it binds itself.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mirrorfleet.client.proxy import AllDown, Answer, Proxy
from mirrorfleet.content.dists import normalize

log = logging.getLogger("mirrorfleet.proxy")
SD_LISTEN_FDS_START = 3  # sd_listen_fds(3): the first socket systemd passes

HELP = """mirrorfleet proxy for the fleet {zone}

pip:  pip install --index-url {base}/simple/ PROJECT
uv:   uv pip install --default-index {base}/simple/ PROJECT
(`mirrorfleet pip-config --proxy --write` sets both for good)

{base}/status   which mirror answers, failovers, verification failures (JSON)
{base}/metrics  the same for Prometheus
"""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: Proxy

    @property
    def base(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"


class _Server6(Server):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept-alive connections: every answer has a length
    # headers and body go out in two writes: with Nagle on, the body waits for the
    # client's delayed ACK of the headers, 40 ms on every answer after a connection's
    # first (bench/proxy_bench.py measured 1.3x pip's time with it, 1.0x without)
    disable_nagle_algorithm = True
    server_version = "mirrorfleet-proxy"
    server: Server

    def do_GET(self) -> None:
        self._answer(send_body=True)

    def do_HEAD(self) -> None:
        self._answer(send_body=False)

    def _route(self) -> Answer:
        path = urlsplit(self.path).path
        proxy = self.server.proxy
        if path in ("/status", "/status.json"):
            body = json.dumps(proxy.status(), indent=2).encode() + b"\n"
            return Answer(200, body, "application/json", verified=False)
        if path == "/metrics":
            body = generate_latest(proxy.metrics.registry)
            return Answer(200, body, CONTENT_TYPE_LATEST, verified=False)
        if path == "/":
            text = HELP.format(zone=proxy.settings.zone, base=self.server.base)
            return Answer.text(200, text, verified=False)
        if path == "/simple/":
            return proxy.root_index()
        if path.startswith("/simple/"):
            name, slash, rest = path[len("/simple/") :].partition("/")
            if rest:
                return proxy.file(path)  # a file kept beside its page
            project = normalize(unquote(name))
            if not slash or project != name:  # PEP 503: one URL per project
                location = f"/simple/{quote(project)}/"
                return Answer.text(301, location, headers={"Location": location}, verified=False)
            return proxy.page(project)
        return proxy.file(path)

    def _answer(self, send_body: bool) -> None:
        try:
            answer = self._route()
        except AllDown as exc:
            log.warning("%s: %s", self.path, exc)
            answer = Answer.text(503, f"mirrorfleet proxy: {exc}", verified=False)
        except Exception as exc:  # a bug must cost one request, never the proxy
            log.exception("%s failed", self.path)
            answer = Answer.text(500, f"mirrorfleet proxy: internal error: {exc!r}")
        body = answer.body
        try:
            size = len(body) if isinstance(body, bytes) else _size(body)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(size))
            if answer.mirror:
                self.send_header("X-Mirrorfleet-Mirror", answer.mirror)
            if answer.serial is not None:
                self.send_header("X-Mirrorfleet-Serial", str(answer.serial))
            self.send_header("X-Mirrorfleet-Verified", "yes" if answer.verified else "no")
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if send_body:
                if isinstance(body, bytes):
                    self.wfile.write(body)
                else:
                    shutil.copyfileobj(body, self.wfile, 256 * 1024)
        finally:
            if not isinstance(body, bytes):
                body.close()

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)


def _size(body: Any) -> int:
    body.seek(0, os.SEEK_END)
    size = body.tell()
    body.seek(0)
    return size


def activated_socket() -> socket.socket | None:
    """The listening socket systemd passed (sd_listen_fds), if it passed one to us."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    count = int(os.environ.get("LISTEN_FDS", "0") or 0)
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for any child
    if count < 1:
        return None
    return socket.socket(fileno=SD_LISTEN_FDS_START)


def parse_listen(text: str) -> tuple[str, int]:
    """HOST:PORT ([::1]:PORT for IPv6); ValueError with what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def make_server(proxy: Proxy, listen: str) -> Server:
    """The proxy's server on systemd's socket, else bound to `listen`."""
    sock = activated_socket()
    if sock is not None:
        cls = _Server6 if sock.family == socket.AF_INET6 else Server
        server = cls(sock.getsockname()[:2], Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        server.server_address = sock.getsockname()
    else:
        host, port = parse_listen(listen)
        server = (_Server6 if ":" in host else Server)((host, port), Handler)
    server.proxy = proxy
    return server
