#!/usr/bin/env bash
# The lab's CI step: installs the lab's Debian packages, builds fbxen, then
#  1. test/lab without the real-xl files, the lab's own integration test enabled (it brings a lab up,
#     checks status and ssh, and takes it down);
#  2. one lab up for the real-xl tests (test/lab/real-xl-*.test.ts: fbxen against the REAL xl of Xen
#     4.17), run one file at a time (a 2-core VM under emulation), and the lab down always, even on
#     failure or Ctrl-C.
# The dom0 image is cached in FBXEN_LAB_DIR (default ~/.cache/fbxen/lab-test): keep that directory
# between runs (a cold cache adds the image build). Wall times: docs/lab.md.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/lab-setup.sh
if [ ! -d node_modules ]; then npm ci --no-audit --no-fund --loglevel=error; fi
npm run --silent build
export FBXEN_LAB_DIR="${FBXEN_LAB_DIR:-$HOME/.cache/fbxen/lab-test}"
started=$(date +%s)
down() { node dist/cli.js lab down --dir "$FBXEN_LAB_DIR" || true; }
trap down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# vitest's --exclude does not apply under this project's config: the files are listed instead.
first=()
for f in test/lab/*.test.ts; do case $f in */real-xl-*) ;; *) first+=("$f") ;; esac; done
FBXEN_LAB_TESTS=1 npx vitest run --project main "${first[@]}"
node dist/cli.js lab up --dir "$FBXEN_LAB_DIR" --timeout 900
# Test B (the stand-in guest: boot --verify, the driver's migrations, migrate-test) and test V (the round
# trip through a real vif, and migrate-test's network check after a real live migration) boot the stand-in,
# whose own Linux may die under the lab's emulation: a boot is retried up to 5 times, and a part during
# which the stand-in died (Xen's triple fault, or fbxen's "the guest crashed/went away") is run again on a
# new boot, up to 3 times (test/lab/real-xl-support.ts, docs/lab.md).
real=(test/lab/real-xl-hvm.test.ts test/lab/real-xl-migrate-fail.test.ts test/lab/real-xl-netforward.test.ts test/lab/real-xl-vif.test.ts test/lab/real-xl-evidence.test.ts)
FBXEN_LAB_TESTS=1 npx vitest run --project main --no-file-parallelism "${real[@]}"
echo "lab-test.sh: $(( $(date +%s) - started )) s after the build"
