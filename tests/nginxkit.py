"""The serve_tree role's nginx site, rendered from its template as the deploy renders
it and run by the real nginx on 127.0.0.1: what a mirror's clients get, without a lab.

Only the listen lines change (a free loopback port instead of 80). nginx runs as
root here (its workers must read a tree under pytest's 0700 folders) and is stopped
by its PID.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import jinja2

from mirrorfleet.lab.ca import Leaf
from mirrorfleet.testing.loopback import ClosedOnExit, free_port, stop_process
from mirrorfleet_roles import nginx as nginx_role
from mirrorfleet_roles import serve_tree

NJS_MODULE = "/usr/lib/nginx/modules/ngx_http_js_module.so"
MIME_TYPES = "/etc/nginx/mime.types"
MAIN = """daemon off;
user root;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
load_module {njs};
events {{ worker_connections 64; }}
http {{
    include {mime};
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    include {work}/site.conf;
}}
"""


def render_site(
    tree: Path, pep691_js: Path, port: int, tls: Leaf | None = None, tls_port: int = 0
) -> str:
    """The site as pyinfra's files.template writes it (roles/nginx: the same loader
    and TLS data), listening on 127.0.0.1:port, and with a leaf on 127.0.0.1:tls_port."""
    data = SimpleNamespace(**{**serve_tree.DEFAULTS, "tree": str(tree)})
    loader = jinja2.FileSystemLoader([str(serve_tree.TEMPLATES), str(nginx_role.TEMPLATES)])
    env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined)
    secure = {
        "tls_certificate": str(tls.cert) if tls else None,
        "tls_key": str(tls.key) if tls else None,
        "acme_webroot": str(tree.parent / "acme") if tls else None,
    }
    text = env.get_template("nginx-site.conf.j2").render(
        host=SimpleNamespace(data=data), pep691_js=str(pep691_js), **secure
    )
    text, count = re.subn(
        r"listen [^;]*80 default_server;", f"listen 127.0.0.1:{port};", text, count=1
    )
    text, more = re.subn(r"\n *listen \[::\]:80 default_server;", "", text)
    assert (count, more) == (1, 1), "the template's listen lines changed: update nginxkit"
    if tls:
        text, count = re.subn(
            r"listen 443 ssl http2 default_server;", f"listen 127.0.0.1:{tls_port} ssl;", text
        )
        text, more = re.subn(r"\n *listen \[::\]:443 ssl http2 default_server;", "", text)
        assert (count, more) == (1, 1), "the template's TLS listen lines changed"
    return text


class LoopbackNginx(ClosedOnExit):
    def __init__(self, tree: Path, workdir: Path, tls: Leaf | None = None) -> None:
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.tree, self.work, self.port = tree, workdir, free_port()
        self.tls_port = free_port() if tls else 0
        workdir.mkdir(parents=True, exist_ok=True)
        script = workdir / serve_tree.PEP691_JS.name
        shutil.copyfile(serve_tree.PEP691_JS, script)
        (workdir / "site.conf").write_text(render_site(tree, script, self.port, tls, self.tls_port))
        self.conf = workdir / "nginx.conf"
        self.conf.write_text(MAIN.format(work=workdir, njs=NJS_MODULE, mime=MIME_TYPES))
        self.argv = [
            nginx,
            "-c",
            str(self.conf),
            "-p",
            str(workdir),
            "-e",
            str(workdir / "error.log"),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LoopbackNginx:
        check = subprocess.run([*self.argv, "-t", "-q"], capture_output=True, text=True)
        assert check.returncode == 0, f"nginx -t: {check.stderr}"
        self.proc = subprocess.Popen(
            self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not self._up():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"nginx did not start: {self.errors()}")
            time.sleep(0.05)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def errors(self) -> str:
        log = self.work / "error.log"
        return log.read_text() if log.exists() else ""

    def close(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
