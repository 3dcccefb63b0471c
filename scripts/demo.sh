#!/usr/bin/env bash
# The main job on the bundled sample: sets up, generates the FreeBSD-SHAPED sample distribution
# (test/sample/make-sample.py: NOT a bootable FreeBSD) and builds raw + qcow2 images from it into out/.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# Made again when the generator changed since (an old sample would build something else than the docs say).
[ out/sample-dist/MANIFEST -nt test/sample/make-sample.py ] || { rm -rf out/sample-dist && python3 test/sample/make-sample.py out/sample-dist; }
node dist/cli.js build --dist out/sample-dist --name sample --out out --disk-size 2G "$@"
