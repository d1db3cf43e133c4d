#!/usr/bin/env bash
# The main job on the local lab: set up, boot the lab, converge it, show it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/mirrorfleet lab up "$@"
.venv/bin/pyinfra -y inventories/lab.py deploy.py
.venv/bin/mirrorfleet lab status
