#!/usr/bin/env bash
# Runs .ci/run N times in a row (default 3), each in a fresh clone of HEAD with ../shared beside it, while
# two busy loops load both cores: the suite must stay green on a loaded 2-core machine.
# Usage: scripts/ci-under-load.sh [N]     (logs in $TMPDIR/fbxen-ci-load-*/run-K.log)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
repo=$(pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/fbxen-ci-load-XXXXXX")
ln -s "$(cd ../shared && pwd)" "$work/shared"
yes > /dev/null & hog1=$!
yes > /dev/null & hog2=$!
trap 'kill $hog1 $hog2 2>/dev/null || true' EXIT
status=0
for k in $(seq 1 "$runs"); do
  rm -rf "$work/main"
  git clone -q "$repo" "$work/main"
  start=$(date +%s)
  if (cd "$work/main" && CI=true bash .ci/run </dev/null >"$work/run-$k.log" 2>&1); then r=ok; else r=FAILED; status=1; fi
  tests=$(sed 's/\x1b\[[0-9;]*m//g' "$work/run-$k.log" | grep -aE '^ +Tests ' | tr -s ' ' | paste -sd';')
  echo "run $k: $r in $(( $(date +%s) - start )) s ($tests)"
done
rm -rf "$work/main"
echo "logs: $work"
exit $status
