"""The client's configuration file: the fleet's zone, the keys (or roots) it pins and
how to look, written once so nobody types a base64 key twice.

Read from /etc/mirrorfleet/client.toml (the machine's), then the user's
($XDG_CONFIG_HOME/mirrorfleet/client.toml, else ~/.config/mirrorfleet/client.toml),
the user's winning key by key; $MIRRORFLEET_CLIENT_CONFIG names one file instead of
both. Every client command (`pick`, `list`, `check`, `pip-config`, `proxy`) takes its
options' defaults from it: an option on the command line, or its environment variable,
still wins.

    zone = "mirrors.example.org"
    keys = ["<base64 root key>", "..."]   # or the origin's own key
    root_threshold = 2
    servers = ["192.0.2.53"]
    dnssec = "/etc/mirrorfleet/zone-anchor.key"
    max_lag = "5m"
    listen = "127.0.0.1:3141"   # where `mirrorfleet proxy` serves pip and uv

A key this version does not know, or a value of the wrong type, is refused with the
file and the key named: a typo never silently drops a setting like `dnssec`.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mirrorfleet.errors import UserError

SYSTEM = Path("/etc/mirrorfleet/client.toml")
ENV = "MIRRORFLEET_CLIENT_CONFIG"
FILE = "client.toml"

# key in the file -> (the click parameter it sets, the type it must have)
SETTINGS: dict[str, tuple[str, type]] = {
    "zone": ("zone", str),
    "keys": ("keys", list),
    "root_threshold": ("threshold", int),
    "servers": ("servers", list),
    "port": ("port", int),
    "region": ("region", str),
    "dnssec": ("anchor_file", str),
    "ca_file": ("ca_file", str),
    "timeout": ("timeout", float),
    "max_lag": ("max_lag", str),
    "listen": ("listen", str),
}
PROXY_LISTEN = "127.0.0.1:3141"  # where `mirrorfleet proxy` serves unless told


KINDS = {str: "a string", int: "an integer", float: "a number", list: "a list of strings"}


def user_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "mirrorfleet" / FILE


def config_files() -> list[Path]:
    """The files read, lowest precedence first."""
    if os.environ.get(ENV):
        return [Path(os.environ[ENV])]
    return [SYSTEM, user_file()]


def load_settings(paths: Sequence[Path] | None = None) -> dict[str, Any]:
    """The merged settings, by file key; {} when no file exists. UserError for a file
    that cannot be read or holds what this version does not take."""
    named = os.environ.get(ENV)
    merged: dict[str, Any] = {}
    for path in config_files() if paths is None else paths:
        try:
            text = path.read_text()
        except FileNotFoundError:
            if named and str(path) == named:
                raise UserError(f"{ENV} names {path}, which does not exist") from None
            continue
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: not TOML: {exc}") from None
        merged.update(check_settings(data, path))
    return merged


def check_settings(data: Mapping[str, Any], where: Path) -> dict[str, Any]:
    for key, value in data.items():
        if key not in SETTINGS:
            known = ", ".join(SETTINGS)
            raise UserError(f"{where}: unknown key {key!r} (known: {known})")
        wanted = SETTINGS[key][1]
        ok = isinstance(value, wanted) and not isinstance(value, bool)
        if wanted is float:
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        if wanted is list:
            ok = ok and all(isinstance(item, str) for item in value)
        if not ok:
            raise UserError(f"{where}: {key} must be {KINDS[wanted]}, not {value!r}")
    return dict(data)


def click_defaults(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings as click's default_map for one command: parameter -> value."""
    return {
        SETTINGS[key][0]: tuple(value) if isinstance(value, list) else value
        for key, value in settings.items()
    }
