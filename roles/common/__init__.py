"""What every mirrorfleet host gets: base packages, the service user, sshd hardening,
time sync where the host can keep its own clock."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import Command
from pyinfra.operations import apt, files, server, systemd

from mirrorfleet_roles import tls
from mirrorfleet_roles.fleet import SERVICE_DEFAULTS

TEMPLATES = Path(__file__).parent / "templates"
SSHD_DROPIN = "/etc/ssh/sshd_config.d/50-mirrorfleet.conf"
TIME_SYNC_PACKAGES = ["systemd-timesyncd"]
SHELL = "/usr/sbin/nologin"  # the service user's: no one logs in as it

DEFAULTS = {
    **SERVICE_DEFAULTS,
    # Packages every role relies on. The lab template carries them all, so a lab
    # host fetches nothing.
    "common_packages": ["python3", "python3-venv", "rsync", "curl", "ca-certificates"],
    # `apt-get update` before installing, at most once per cache_time seconds.
    "common_apt_update": True,
    "common_apt_cache_time": 3600,
    # sshd: keys only; root by key is kept because pyinfra connects as root.
    "sshd_permit_root_login": "prohibit-password",
    "sshd_max_auth_tries": 3,
    # systemd-timesyncd; skipped inside containers, which share the host's clock.
    "common_time_sync": True,
    # A PEM bundle on the control node whose roots every host trusts (a private CA,
    # or the lab's ACME CA); unset: the system's roots only.
    "tls_trust": None,
}


@deploy("mirrorfleet common", data_defaults=DEFAULTS)
def apply() -> None:
    apt.packages(
        name="Install base packages",
        packages=host.data.common_packages,
        update=host.data.common_apt_update,
        cache_time=host.data.common_apt_cache_time,
        no_recommends=True,
    )

    # pyinfra's user operation reads every account on the host first (its Users fact
    # forks ~8 processes per account: 1.3 s of a 10 s rerun on the lab, far more on
    # a TCG VM), so it runs only when the one entry we own is not already as wanted.
    user, home = host.data.service_user, host.data.service_home
    if not passwd_entry_is(host.get_fact(Command, f"getent passwd {user} || true"), home, SHELL):
        server.user(
            name="Create the mirrorfleet service user",
            user=user,
            system=True,
            home=home,
            shell=SHELL,
            create_home=True,
        )
    files.directory(
        name="Create the configuration directory",
        path=host.data.config_dir,
        user="root",
        group=host.data.service_user,
        mode="0750",
    )

    tls.trust()

    sshd = files.template(
        name="Harden sshd",
        src=str(TEMPLATES / "sshd_hardening.conf.j2"),
        dest=SSHD_DROPIN,
        user="root",
        group="root",
        mode="0644",
    )
    server.shell(
        name="Check sshd configuration (revert if invalid)",
        commands=[f"sshd -t || {{ rm -f {SSHD_DROPIN}; sshd -t; exit 1; }}"],
        _if=sshd.did_change,
    )
    systemd.service(
        name="Reload sshd",
        service="ssh.service",
        reloaded=True,
        _if=sshd.did_change,
    )

    in_container = host.get_fact(Command, "systemd-detect-virt --container || true") != "none"
    if host.data.common_time_sync:
        apt.packages(
            name="Install systemd-timesyncd",
            packages=TIME_SYNC_PACKAGES,
            no_recommends=True,
        )
        systemd.service(
            name="Enable time sync",
            service="systemd-timesyncd.service",
            enabled=True,
            running=None if in_container else True,
        )


def passwd_entry_is(entry: str | None, home: str, shell: str) -> bool:
    """Whether a `getent passwd` line already has the home and shell server.user would
    set on an existing account (the only fields it changes there)."""
    fields = (entry or "").strip().split(":")
    return len(fields) == 7 and fields[5:7] == [home, shell]
