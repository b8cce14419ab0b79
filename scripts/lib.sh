# Shared by the scripts: install what is missing from Debian, and build.
# shellcheck shell=bash

KV_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KV_BUILD="${KV_BUILD:-$KV_ROOT/build}"

# Debian packages the build and the tests need.
KV_PACKAGES=(cmake g++ make libboost1.81-all-dev libboost-json1.81-dev libedit-dev librocksdb-dev
  libjemalloc-dev libssl-dev openssl curl iproute2 python3 strace)

kv_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the packages in "$@" that are not installed yet.
kv_ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    kv_as_root apt-get update -q
    kv_as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
      --no-install-recommends "${missing[@]}"
  fi
}

kv_ensure_deps() { kv_ensure_packages "${KV_PACKAGES[@]}"; }

kv_build() {
  cmake -S "$KV_ROOT" -B "$KV_BUILD" -DCMAKE_BUILD_TYPE="${KV_BUILD_TYPE:-RelWithDebInfo}" \
    ${KV_CMAKE_ARGS:-} >/dev/null
  cmake --build "$KV_BUILD" -j2
}
