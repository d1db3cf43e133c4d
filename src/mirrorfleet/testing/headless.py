"""Render a page in headless Chromium and return its DOM after the scripts ran.

Why: the monitor's status page is built in the browser from JSON, so the only honest
test of it is a real browser. `--dump-dom` with a virtual time budget runs the page's
scripts (fetches included: virtual time stands still while a request is pending) and
prints the resulting DOM, with no driver or extra Python package.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile

from mirrorfleet.errors import UserError

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def render_dom(url: str, timeout: float = 30, *, virtual_time_ms: int = 5000) -> str:
    """Load `url` in a fresh headless Chromium profile and return the DOM it ends with.

    `virtual_time_ms` is how much (virtual, so fast) page time the scripts get before
    the DOM is dumped. `--no-sandbox` because tests run as root, where Chromium refuses
    its sandbox.
    """
    browser = find_chromium()
    if browser is None:
        raise UserError(
            f"no Chromium on PATH (looked for {', '.join(BROWSERS)}): "
            "install Debian's chromium package (scripts/setup.sh does)"
        )
    with tempfile.TemporaryDirectory(prefix="mirrorfleet-chromium-") as profile:
        argv = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            f"--virtual-time-budget={virtual_time_ms}",
            f"--user-data-dir={profile}",
            url,
        ]
        # Own process group: Debian's chromium is a shell wrapper with children of
        # its own, and a timeout must take all of them down.
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise UserError(f"Chromium did not render {url} within {timeout:g}s") from None
        finally:
            if proc.poll() is None:  # interrupted some other way: leave no browser behind
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    if proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-5:])
        raise UserError(f"Chromium exited {proc.returncode} rendering {url}:\n{tail}")
    return out
