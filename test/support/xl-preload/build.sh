#!/bin/sh
# Builds the test helpers against Debian's libxen-dev into OUTDIR (default: a temporary directory):
#   OUTDIR/xl-dryrun-shim.so  LD_PRELOAD library (a simulation of the hypervisor calls xl -N create makes)
#   OUTDIR/xlu-disk-parse     runs disk specs through libxlutil's xlu_disk_parse
# Prints OUTDIR. Needs: gcc, libxen-dev, xen-utils-4.17 (for /usr/lib/xen-4.17/bin/xl at test time).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/fbxen-xl-preload.XXXXXX")}
mkdir -p "$out"
cc=${CC:-cc}
$cc -shared -fPIC -O2 -Wall -Wextra -Werror -o "$out/xl-dryrun-shim.so.tmp" "$here/xl-dryrun-shim.c"
mv "$out/xl-dryrun-shim.so.tmp" "$out/xl-dryrun-shim.so"
$cc -O2 -Wall -Wextra -Werror -o "$out/xlu-disk-parse.tmp" "$here/xlu-disk-parse.c" -lxlutil -lxenlight
mv "$out/xlu-disk-parse.tmp" "$out/xlu-disk-parse"
echo "$out"
