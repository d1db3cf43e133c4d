"""The files a role puts in config_dir, with the owner and mode each kind gets.

A config is rendered from its `mirrorfleet.config` dataclass (config.dumps) and
read back through the daemon's own loader on the control node before it is
uploaded, so a config the daemon would refuse never reaches a host. Imports
nothing else from the roles.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api.exceptions import DeployError
from pyinfra.api.operation import OperationMeta
from pyinfra.operations import files

from mirrorfleet.config import dumps
from mirrorfleet.errors import UserError


def render(config: Any, header: str, load: Callable[[Path], Any]) -> str:
    """config as TOML, checked by loading it back with `load` (load_agent_config, ...)
    to an equal config: what the daemon will read is what the role meant."""
    text = dumps(config, header)
    with tempfile.TemporaryDirectory(prefix="mirrorfleet-config-") as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(text)
        try:
            loaded = load(path)
        except UserError as exc:
            raise DeployError(f"{host.name}: {exc}") from None
    if loaded != config:
        raise DeployError(f"{host.name}: the rendered config does not read back: {text}")
    return text


def put_config(name: str, filename: str, text: str) -> OperationMeta:
    """A config into config_dir: owned by root, readable by the service group (0640),
    so the daemon reads it and cannot change it."""
    return files.put(
        name=name,
        src=StringIO(text),
        dest=f"{host.data.config_dir}/{filename}",
        user="root",
        group=host.data.service_user,
        mode="0640",
    )


def put_secret(src: Path, filename: str) -> OperationMeta:
    """A secret into config_dir, readable by the service user only (0600)."""
    user = host.data.service_user
    return files.put(
        name=f"Install {filename} (0600)",
        src=str(src),
        dest=f"{host.data.config_dir}/{filename}",
        user=user,
        group=user,
        mode="0600",
    )


def put_public(src: Path, filename: str) -> OperationMeta:
    """A public file (the roots' keys document) into config_dir: root's, world-readable."""
    return files.put(
        name=f"Install {filename} (0644)",
        src=str(src),
        dest=f"{host.data.config_dir}/{filename}",
        user="root",
        group="root",
        mode="0644",
    )


def put_state_dir(name: str, path: str) -> OperationMeta:
    """A daemon's state folder: the service user's alone (0750)."""
    user = host.data.service_user
    return files.directory(name=name, path=path, user=user, group=user, mode="0750")
