"""A tree served the way an upstream serves it, on 127.0.0.1 only: a real rsync
daemon with a read-only module and an HTTP server. For tests and benchmarks that
need an upstream without lab hosts."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

MODULE = "mirror"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """A server this harness started, stopped by its PID: SIGTERM, then SIGKILL if it
    has not gone within `timeout`. SIGCONT too: a process a test holds with SIGSTOP
    acts on SIGTERM only once it runs again."""
    if proc.poll() is not None:
        return
    proc.terminate()
    proc.send_signal(signal.SIGCONT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class ClosedOnExit:
    """Leaving a `with` block closes the servers, whatever went wrong inside it."""

    def close(self) -> None:
        raise NotImplementedError

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()


class LoopbackUpstream(ClosedOnExit):
    def __init__(self, tree: Path, workdir: Path) -> None:
        self.tree, self.workdir = tree, workdir
        self.rsync_port = free_port()
        self._rsyncd: subprocess.Popen[bytes] | None = None
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def rsync_url(self) -> str:
        return f"rsync://127.0.0.1:{self.rsync_port}/{MODULE}/"

    @property
    def http_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def __enter__(self) -> LoopbackUpstream:
        conf = self.workdir / "rsyncd.conf"
        conf.write_text(
            f"use chroot = no\nuid = {os.getuid()}\ngid = {os.getgid()}\n"
            f"[{MODULE}]\npath = {self.tree}\nread only = yes\n"
        )
        self._rsyncd = subprocess.Popen(
            [
                "rsync",
                "--daemon",
                "--no-detach",
                f"--config={conf}",
                f"--port={self.rsync_port}",
                "--address=127.0.0.1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        handler = functools.partial(_QuietHandler, directory=str(self.tree))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.rsync_port), timeout=0.2).close()
                return self
            except OSError:
                if time.monotonic() > deadline or self._rsyncd.poll() is not None:
                    self.close()
                    raise RuntimeError("the loopback rsync daemon did not start") from None
                time.sleep(0.05)

    def stop_rsync(self) -> None:
        if self._rsyncd is not None:
            self._rsyncd.terminate()
            self._rsyncd.wait(timeout=10)
            self._rsyncd = None

    def stop_http(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def close(self) -> None:
        self.stop_rsync()
        self.stop_http()
