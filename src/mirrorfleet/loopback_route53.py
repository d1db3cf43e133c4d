"""A Route 53 endpoint on 127.0.0.1 (moto in server mode, real HTTP), with dummy
credentials only, for tests and benchmarks: a real AWS account is never used."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mirrorfleet.loopback import free_port

START_TIMEOUT = 30.0
# moto_server's own entry point with one check turned off: moto 5 refuses a CREATE
# identical to any earlier CREATE in its change journal while the record set exists
# *before* the batch, even when the same batch deletes it first (getmoto/moto#9105).
# Route 53 applies a batch's changes in order and accepts that DELETE+CREATE, which
# is how every batch re-asserts our ownership marker. route53.py refuses a real
# CREATE of a live record set itself, before sending (tested).
LAUNCHER = """
import sys
from moto.route53 import models
models.ChangeList.__contains__ = lambda self, item: False
from moto.server import main
sys.exit(main())
"""
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent/aws/config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws/credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
}
AWS_UNSET = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_ROUTE_53",
)


@contextmanager
def dummy_aws_env() -> Iterator[None]:
    """Only dummy credentials and no AWS config files for the duration."""
    saved = dict(os.environ)
    for name in AWS_UNSET:
        os.environ.pop(name, None)
    os.environ.update(AWS_ENV)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def moto_route53(log: Path | None = None) -> Iterator[str]:
    """The endpoint URL of a moto server on a free loopback port; stopped by its PID."""
    port = free_port()
    with open(log or os.devnull, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text()[-2000:] if log else "(no log kept)"
                    raise RuntimeError(
                        f"moto server did not start (is moto[server] installed?): {tail}"
                    ) from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
