"""`mirrorfleet proxy` as a user runs it, for the tests and the benchmark that drive it
from outside: one way to start it, know it is ready, and stop it."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from mirrorfleet.testing.loopback import free_port, stop_process


@contextmanager
def running_proxy(
    mirrorfleet: Sequence[str],
    lookup: Sequence[str],
    log: Path,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    ready_within: float = 30,
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`mirrorfleet proxy -v` on a free loopback port, its log in `log`: its process and
    base URL once /status answers. Stopped by its PID, even when a test holds it with
    SIGSTOP. `lookup` is how it finds the fleet (--zone, --server, --key ...)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [*mirrorfleet, "proxy", *lookup, "--listen", f"127.0.0.1:{port}"]
    argv += ["--timeout", str(timeout), "-v"]
    with log.open("w") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=None if env is None else dict(env)
        )
    try:
        deadline = time.monotonic() + ready_within
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the proxy exited:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/status", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"no /status within {ready_within:.0f}s:\n{log.read_text()}"
                    ) from None
                time.sleep(0.05)
        yield proc, base
    finally:
        stop_process(proc)
