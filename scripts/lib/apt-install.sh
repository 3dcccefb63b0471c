# shellcheck shell=bash
# apt_install_missing TAG [--no-install-recommends] PACKAGE...: installs the Debian packages that are not
# installed yet (apt-get update only then); TAG prefixes the messages. Sourced by scripts/setup.sh and
# scripts/lab-setup.sh, so the two install the same way.
apt_install_missing() {
  local tag=$1
  shift
  local opts=()
  if [ "${1:-}" = --no-install-recommends ]; then opts+=("$1"); shift; fi
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  echo "$tag: installing Debian packages: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # Another apt or dpkg (unattended-upgrades, a parallel job) may hold the locks: wait for it, up to
  # 10 minutes, instead of failing at once. DPkg::Lock::Timeout covers dpkg's lock; the lists lock that
  # `apt-get update` takes is retried here.
  local apt_wait=(-o DPkg::Lock::Timeout=600) attempt out
  for attempt in $(seq 1 120); do
    if out=$($sudo apt-get "${apt_wait[@]}" update -qq 2>&1); then break; fi
    if ! grep -qi 'lock' <<<"$out" || [ "$attempt" -eq 120 ]; then echo "$out" >&2; return 1; fi
    [ "$attempt" -eq 1 ] && echo "$tag: waiting for another apt to release its lock..." >&2
    sleep 5
  done
  DEBIAN_FRONTEND=noninteractive $sudo apt-get "${apt_wait[@]}" install -y -qq "${opts[@]}" "${missing[@]}" >/dev/null
}
