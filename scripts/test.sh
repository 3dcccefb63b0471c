#!/usr/bin/env bash
# Runs the whole test suite: sets up (Debian packages, npm ci, build), then typechecks, checks the import
# graph and runs vitest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
npm run --silent typecheck
# The import graph's layers (docs/architecture.md): a cycle or an upward import fails the run before vitest.
npm run --silent lint:deps
npm test
