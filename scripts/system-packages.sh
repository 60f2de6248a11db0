#!/usr/bin/env bash
# Install the Debian packages the PKCS#11 tests and demo use (SoftHSM2 as a real token,
# p11-kit-proxy for thread-safe module loading), when they are missing and we are root.
# Without root or apt-get this prints one line and exits 0: the PKCS#11 tests then skip
# with a clear reason, unless AAUTH_REQUIRE_SOFTHSM=1 (which .ci/run sets) makes them fail.
set -euo pipefail
packages=(softhsm2 p11-kit-modules)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "system-packages: ${missing[*]} missing and cannot be installed here (needs root and apt-get); PKCS#11 tests will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -q >/dev/null
    apt-get install -y -q "${missing[@]}" >/dev/null
fi
echo "system-packages: installed ${missing[*]}" >&2
