"""pip and uv as users run them against one mirror (issue 16): Debian's pip, the
latest pip, `uv pip install`, and a uv project with a lock file.

Each run is isolated from this machine: a fresh target venv made by Debian's python3
(CLIENT_PYTHON), no cache, and an environment built from nothing (no PIP_*, UV_*,
proxy or XDG variables of ours; HOME and the XDG folders point into the run's own
folder, so no user or system pip.conf or uv.toml is read; XDG_CONFIG_DIRS is an
empty folder, so /etc/xdg/pip is not either). The only index is the one the run is
given, in the form `mirrorfleet pip-config` prints it. Build isolation stays on, so
an sdist builds with setuptools (and wheel) fetched from that index.

The latest pip and uv come from the wheel cache (tests/wheelcache.py) into a tools
venv, offline.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from wheelcache import CLIENT_PYTHON, WheelCache

from mirrorfleet.content.dists import normalize

RUN_TIMEOUT = 240  # seconds for one client command (a resolve, a build, an install)
CLIENTS = ("debian-pip", "latest-pip", "uv-pip", "uv-project")
# What each client installs: requests pulls its dependencies; six has only an sdist.
REQUIREMENTS = ("requests", "packaging", "six")
INSTALLED = ("requests", "charset-normalizer", "idna", "urllib3", "certifi", "packaging", "six")
BUILD_REQUIREMENTS = ("setuptools",)  # what building six needs from the index, at least
LIST_INSTALLED = (
    "import importlib.metadata as m, json; "
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
)


class ClientFailed(AssertionError):
    pass


@dataclass
class Run:
    """One client's install: what it left in its venv, and how long it took."""

    client: str
    index: str
    seconds: float
    installed: dict[str, str]  # normalized project -> version, in the target venv
    sources: dict[str, str] = field(default_factory=dict)  # project -> URL it came from
    log: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # uv-project: lock, sync


def sandbox_env(home: Path, **settings: str) -> dict[str, str]:
    """An environment with nothing of this machine's in it but PATH and a locale."""
    for sub in (".config", ".cache", "xdg-dirs", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_DIRS": str(home / "xdg-dirs"),  # empty: no /etc/xdg/{pip,uv}
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "UV_PYTHON_DOWNLOADS": "never",  # a uv that wants another Python fails here
        "UV_NO_PROGRESS": "1",
    }
    env.update(settings)
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        raise ClientFailed(f"{' '.join(argv)}: no end in {RUN_TIMEOUT}s") from exc
    if proc.returncode != 0:
        raise ClientFailed(
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-2000:]}"
            f"\n{proc.stderr[-4000:]}"
        )
    return proc.stdout + proc.stderr


def parse_exports(text: str) -> dict[str, str]:
    """`mirrorfleet pip-config --format env`: export NAME=value lines."""
    found = {}
    for line in text.splitlines():
        m = re.fullmatch(r"export ([A-Z_]+)=(\S+)", line.strip())
        if m:
            found[m[1]] = m[2]
    return found


class Clients:
    """The four clients, set up once under `work` from the wheel cache."""

    def __init__(self, work: Path, cache: WheelCache) -> None:
        self.work, self.cache = work, cache
        self.tools = work / "tools"
        self.count = 0

    def setup(self) -> dict[str, str]:
        """The tools venv (latest pip, uv), offline; returns each client's version."""
        if shutil.which(CLIENT_PYTHON) is None:
            raise ClientFailed(f"{CLIENT_PYTHON} is missing: apt-get install python3-venv")
        env = sandbox_env(self.work / "home-tools", PIP_CONFIG_FILE=os.devnull)
        run([CLIENT_PYTHON, "-m", "venv", "--without-pip", str(self.tools)], env)
        pip_wheel, uv_wheel = self.cache.tool("pip"), self.cache.tool("uv")
        offline = ["--no-index", "--no-cache-dir", str(pip_wheel), str(uv_wheel)]
        run([str(self.tools / "bin/python"), f"{pip_wheel}/pip", "install", "-q", *offline], env)
        return self.versions()

    def versions(self) -> dict[str, str]:
        env = sandbox_env(self.work / "home-tools", PIP_CONFIG_FILE=os.devnull)
        debian = run([CLIENT_PYTHON, "-m", "pip", "--version"], env).split()
        latest = run([str(self.tools / "bin/pip"), "--version"], env).split()
        uv = run([str(self.uv), "--version"], env).split()
        return {
            "debian-pip": f"{debian[1]} ({debian[3]})",
            "latest-pip": latest[1],
            "uv": uv[1],
        }

    @property
    def uv(self) -> Path:
        return self.tools / "bin/uv"

    def _place(self, client: str) -> tuple[Path, Path]:
        self.count += 1
        place = self.work / f"{self.count:02d}-{client}"
        return place, place / "home"

    def _target_venv(self, place: Path, env: dict[str, str]) -> Path:
        venv = place / "venv"
        run([CLIENT_PYTHON, "-m", "venv", "--without-pip", str(venv)], env)
        return venv

    def installed(self, python: Path, env: dict[str, str]) -> dict[str, str]:
        listed = json.loads(run([str(python), "-c", LIST_INSTALLED], env))
        return {normalize(name): version for name, version in listed.items()}

    # -- the clients ----------------------------------------------------------------

    def debian_pip(
        self, pip_conf: str, dry_run: bool = False, requirements: tuple[str, ...] = REQUIREMENTS
    ) -> Run:
        """Debian's pip (python3-pip) with the pip.conf `pip-config` prints, installing
        into a venv it is pointed at (`--python`). `dry_run`: resolve only (the
        benchmark); the pips and `uv pip` take it, and `requirements`, alike."""
        place, home = self._place("debian-pip")
        conf = place / "pip.conf"
        place.mkdir(parents=True)
        conf.write_text(pip_conf + "\n")
        env = sandbox_env(home, PIP_CONFIG_FILE=str(conf))
        venv = self._target_venv(place, env)
        pip = [CLIENT_PYTHON, "-m", "pip"]
        return self._pip("debian-pip", pip, venv, place, env, dry_run, requirements)

    def latest_pip(
        self,
        exports: dict[str, str],
        dry_run: bool = False,
        requirements: tuple[str, ...] = REQUIREMENTS,
    ) -> Run:
        """The latest pip with the environment `pip-config --format env` prints."""
        place, home = self._place("latest-pip")
        settings = {k: v for k, v in exports.items() if k.startswith("PIP_")}
        env = sandbox_env(home, PIP_CONFIG_FILE=os.devnull, **settings)
        venv = self._target_venv(place, env)
        pip = [str(self.tools / "bin/python"), "-m", "pip"]
        return self._pip("latest-pip", pip, venv, place, env, dry_run, requirements)

    def _pip(
        self,
        client: str,
        pip: list[str],
        venv: Path,
        place: Path,
        env: dict,
        dry_run: bool,
        requirements: tuple[str, ...],
    ) -> Run:
        report = place / "report.json"
        argv = [*pip, "--python", str(venv / "bin/python"), "install", "--no-cache-dir"]
        argv += ["--progress-bar", "off", "--report", str(report), *requirements]
        argv += ["--dry-run"] if dry_run else []
        started = time.monotonic()
        log = run(argv, env)
        seconds = time.monotonic() - started
        config = run([*pip, "config", "list"], env)
        index = _pip_index(config, env)
        sources = {
            normalize(item["metadata"]["name"]): item["download_info"]["url"]
            for item in json.loads(report.read_text())["install"]
        }
        installed = self.installed(venv / "bin/python", env)
        return Run(client, index, seconds, installed, sources, log)

    def uv_pip(
        self, uv_toml: str, dry_run: bool = False, requirements: tuple[str, ...] = REQUIREMENTS
    ) -> Run:
        """`uv pip install` with the uv.toml `pip-config --format uv` prints (and the
        SSL_CERT_FILE its comment names, as a user would export it)."""
        place, home = self._place("uv-pip")
        place.mkdir(parents=True)
        config = place / "uv.toml"
        config.write_text(uv_toml + "\n")
        env = sandbox_env(home, **parse_exports(uv_toml.replace("# uv trusts this CA with: ", "")))
        venv = self._target_venv(place, env)
        argv = [str(self.uv), "pip", "install", "--config-file", str(config), "--no-cache"]
        argv += ["--python", str(venv / "bin/python"), *requirements]
        argv += ["--dry-run"] if dry_run else []
        started = time.monotonic()
        log = run(argv, env)
        seconds = time.monotonic() - started
        index = next(i["url"] for i in tomllib.loads(uv_toml)["index"] if i.get("default"))
        return Run("uv-pip", index, seconds, self.installed(venv / "bin/python", env), log=log)

    def uv_project(
        self, exports: dict[str, str], requirements: tuple[str, ...] = REQUIREMENTS
    ) -> Run:
        """A uv project: `uv lock`, then `uv sync --locked`, with the environment
        `pip-config --format env` prints. Every locked package must come from that
        index, recorded in uv.lock."""
        place, home = self._place("uv-project")
        project = place / "project"
        project.mkdir(parents=True)
        deps = ", ".join(json.dumps(r) for r in requirements)
        (project / "pyproject.toml").write_text(
            "[project]\n"
            'name = "mirror-check"\n'
            'version = "0"\n'
            'requires-python = ">=3.11"\n'
            f"dependencies = [{deps}]\n"
        )
        settings = {k: v for k, v in exports.items() if k.startswith("UV_")}
        if "SSL_CERT_FILE" in exports:
            settings["SSL_CERT_FILE"] = exports["SSL_CERT_FILE"]
        env = sandbox_env(home, **settings)
        python = ["--python", CLIENT_PYTHON, "--no-cache"]
        started = time.monotonic()
        log = run([str(self.uv), "lock", *python], env, cwd=project)
        locked = time.monotonic()
        log += run([str(self.uv), "sync", "--locked", *python], env, cwd=project)
        seconds = time.monotonic() - started
        phases = {"lock": locked - started, "sync": started + seconds - locked}
        lock = tomllib.loads((project / "uv.lock").read_text())
        sources = {}
        for package in lock["package"]:
            source = package["source"]
            if "virtual" in source or "editable" in source:
                continue  # the project itself
            files = [package.get("sdist", {}), *package.get("wheels", [])]
            urls = [f["url"] for f in files if "url" in f]
            sources[normalize(package["name"])] = source.get("registry", str(source))
            if not urls or not all(u.startswith(_base(settings["UV_DEFAULT_INDEX"])) for u in urls):
                raise ClientFailed(f"uv.lock: {package['name']} files from elsewhere: {urls}")
        installed = self.installed(project / ".venv/bin/python", env)
        index = settings["UV_DEFAULT_INDEX"]
        return Run("uv-project", index, seconds, installed, sources, log, phases)


def _base(index: str) -> str:
    """http://host/ of an index URL."""
    parts = urlsplit(index)
    return f"{parts.scheme}://{parts.netloc}/"


def _pip_index(config_list: str, env: dict[str, str]) -> str:
    """The index pip was told: its config file's, or the environment's."""
    for line in config_list.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("index-url"):
            return value.strip().strip("'")
    return env.get("PIP_INDEX_URL", "")


def expected(cache: WheelCache) -> dict[str, str]:
    """What every client must leave installed: the cached version of each project."""
    versions = cache.versions()
    return {project: versions[project] for project in INSTALLED}


def check_run(run_: Run, cache: WheelCache) -> None:
    """The versions the cache holds, every one installed from the run's index."""
    want = expected(cache)
    got = {p: v for p, v in run_.installed.items() if p in want or p in BUILD_REQUIREMENTS}
    if got != want:
        raise ClientFailed(f"{run_.client} installed {got}, not {want}")
    base = _base(run_.index)
    for project, url in run_.sources.items():
        if not url.startswith(base):
            raise ClientFailed(f"{run_.client}: {project} came from {url}, not {base}")
    if run_.sources and set(run_.sources) != set(want):
        raise ClientFailed(f"{run_.client} fetched {sorted(run_.sources)}, not {sorted(want)}")


# -- what the mirror saw: nginx's access log (Debian's combined format) ----------------

LOG_LINE = re.compile(
    r'^(?P<addr>\S+) \S+ \S+ \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" '
    r'(?P<status>\d{3}) (?P<bytes>\d+|-) "[^"]*" "(?P<agent>[^"]*)"'
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int
    agent: str
    bytes: int = 0  # the body nginx sent


def requests_in(log: str) -> list[Request]:
    found = []
    for line in log.splitlines():
        m = LOG_LINE.match(line)
        if m:
            size = 0 if m["bytes"] == "-" else int(m["bytes"])
            found.append(Request(m["method"], m["path"], int(m["status"]), m["agent"], size))
    return found


def files_fetched(requests: list[Request], agent_prefix: str) -> set[str]:
    """The file names a client (its User-Agent's first word) got, whole or in part."""
    return {
        r.path.rsplit("/", 1)[-1]
        for r in requests
        if r.agent.startswith(agent_prefix)
        and r.method == "GET"
        and r.path.startswith("/packages/")
        and r.status in (200, 206)
    }
