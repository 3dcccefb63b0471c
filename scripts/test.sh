#!/usr/bin/env bash
# Runs the whole test suite: sets up (Debian packages, npm ci, build), then typechecks, checks the import
# graph, runs vitest, then the real-xl tests in the lab (scripts/lab-test.sh: about 6 min with the dom0
# image cached, plus 1.5-6 min to build it on a fresh machine).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
npm run --silent typecheck
# The import graph's layers (docs/architecture.md): a cycle or an upward import fails the run before vitest.
npm run --silent lint:deps
npm test
# The real toolstack: fbxen against the real xl of Xen 4.17 in the lab VM (docs/lab.md). Installs the
# lab's packages, builds (or reuses) the dom0 image, and takes the lab down whatever happens. (`npm test`
# alone runs everything but this.)
./scripts/lab-test.sh
