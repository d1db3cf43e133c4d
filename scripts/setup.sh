#!/usr/bin/env bash
# Install what mirrorfleet needs on this machine: Debian packages and a venv in .venv.
# Idempotent: a second run installs nothing. Run as root (the lab needs it anyway).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(debootstrap systemd-container iproute2 openssh-client rsync curl bind9 bind9-dnsutils python3 python3-venv)
packages+=(chromium)  # headless tests of the monitor's status page
packages+=(libfaketime)  # the fault suite runs a lab host's agent an hour fast
packages+=(nginx libnginx-mod-http-js)  # the mirrors' nginx site, run on loopback by the unit tests
packages+=(python3-pip)  # Debian's pip: one of the real clients the fleet lab installs with
# the Vagrant route on real VMs (libvirt; TCG where KVM cannot run them), and its box
packages+=(libvirt-daemon-system qemu-system-x86 qemu-utils vagrant-libvirt dnsmasq-base e2fsprogs)
packages+=("$@")  # extra packages, e.g. vagrant for the test suite

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "==> apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import mirrorfleet, mirrorfleet_roles' 2>/dev/null \
   || [[ pyproject.toml -nt .venv/.installed ]]; then
  echo "==> installing mirrorfleet into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch .venv/.installed
fi
