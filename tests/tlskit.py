"""HTTPS servers on loopback, for the tests of HTTPS reads (issue 17): the lab's CA
(mirrorfleet.lab.ca: leaves for any names and any validity), and a tree served over
TLS by Python's own HTTP server.
"""

from __future__ import annotations

import functools
import ssl
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from mirrorfleet.lab.ca import LabCA, Leaf
from mirrorfleet.testing.loopback import ClosedOnExit

__all__ = ["Leaf", "LoopbackHTTPS", "TestCA"]


class TestCA(LabCA):
    __test__ = False  # not a pytest class

    def __init__(self, folder: Path, name: str = "mirrorfleet test root") -> None:
        super().__init__(folder, name)


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class LoopbackHTTPS(ClosedOnExit):
    """A tree served over HTTPS on 127.0.0.1 with one leaf certificate; `url` names
    the server `host` (localhost resolves to 127.0.0.1)."""

    def __init__(self, tree: Path, leaf: Leaf, host: str = "localhost") -> None:
        self.tree, self.leaf, self.host = tree, leaf, host
        self._httpd: ThreadingHTTPServer | None = None

    def __enter__(self) -> LoopbackHTTPS:
        handler = functools.partial(_Quiet, directory=str(self.tree))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.leaf.cert, self.leaf.key)
        self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"https://{self.host}:{self._httpd.server_address[1]}/"

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
