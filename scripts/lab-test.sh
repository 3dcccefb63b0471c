#!/usr/bin/env bash
# The lab's CI step: installs the lab's Debian packages, builds fbxen and runs test/lab with the real-Xen
# integration test enabled (a real Xen 4.17 under QEMU: `fbxen lab up`, status, ssh, down). The dom0
# image is cached in FBXEN_LAB_DIR (default ~/.cache/fbxen/lab-test): keep that directory between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/lab-setup.sh
if [ ! -d node_modules ]; then npm ci --no-audit --no-fund --loglevel=error; fi
npm run --silent build
FBXEN_LAB_TESTS=1 npx vitest run --project main test/lab/
