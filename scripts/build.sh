#!/usr/bin/env bash
# Compiles src/ into dist/ unless dist/ is already newer than every input (the sources, the TypeScript
# config, the installed packages): an unchanged tree costs nothing (tsc itself takes 10-25 s here).
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=dist/.build-stamp
if [ -f "$stamp" ] && [ -f dist/cli.js ] \
  && [ -z "$(find src tsconfig.json package.json package-lock.json -newer "$stamp" -print -quit 2>/dev/null)" ]; then
  exit 0
fi
rm -f "$stamp"
npx tsc -p tsconfig.json
touch "$stamp"
