#!/usr/bin/env bash
# Runs the whole test suite: sets up (Debian packages, npm ci, build), then typechecks and runs vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
npm run --silent typecheck
npm test
