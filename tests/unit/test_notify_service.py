"""The agent's and the monitor's POST /ping over real HTTP on loopback: a body is
read only up to what its Content-Length says, and only when that is a byte count
within MAX_BODY; anything else is refused at once, never read to the end."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from mirrorfleet.notify.ping import MAX_BODY, PingVerifier
from mirrorfleet.notify.service import make_handler, serve_http


@pytest.fixture
def server() -> Iterator[tuple[str, int]]:
    pings = Counter("pings", "pings", ["verdict"], registry=CollectorRegistry())
    handler = make_handler(
        "test", PingVerifier(b"s" * 32), lambda _p: None, pings, {}, logging.getLogger("t")
    )
    httpd = serve_http(("127.0.0.1", 0), handler)
    try:
        yield httpd.server_address[:2]
    finally:
        httpd.shutdown()
        httpd.server_close()


def status_of(address: tuple[str, int], length: str) -> int:
    """POST /ping with this Content-Length and a connection left open, as a sender
    that never stops would; the status line, or 0 when none came in 5 s."""
    with socket.create_connection(address, timeout=5) as conn:
        conn.sendall(
            f"POST /ping HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{}}".encode()
        )
        try:
            line = conn.makefile("rb").readline()
        except TimeoutError:
            return 0
    return int(line.split()[1]) if line else 0


@pytest.mark.parametrize(
    ("length", "status"),
    [("-1", 400), ("ten", 400), (str(MAX_BODY + 1), 413), ("2", 401)],
)
def test_a_body_is_read_only_as_far_as_its_length_allows(
    server: tuple[str, int], length: str, status: int
) -> None:
    assert status_of(server, length) == status
