#!/usr/bin/env bash
# Installs what kvm-hypervisor needs on a fresh Debian machine: QEMU (x86 system emulator)
# when it is missing, the npm dependencies, and the build (the CLI runs from dist/).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v "${QEMU:-qemu-system-x86_64}" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing QEMU (apt-get install -y qemu-system-x86)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq qemu-system-x86 >/dev/null
  else
    echo "setup: qemu-system-x86_64 is missing. Install it, then run this again:" >&2
    echo "  Debian/Ubuntu: sudo apt-get install -y qemu-system-x86" >&2
    echo "  Fedora/RHEL:   sudo dnf install -y qemu-system-x86-core" >&2
    echo "  or point QEMU=/path/to/qemu-system-x86_64 at an existing binary" >&2
    exit 1
  fi
fi

# openssl makes the throwaway certificates of the TLS tests and `kvm-hv demo --tls`;
# qemu-img (qemu-utils) makes the disk images of the instance tests.
extra=()
command -v openssl >/dev/null 2>&1 || extra+=(openssl)
command -v qemu-img >/dev/null 2>&1 || extra+=(qemu-utils)
if [ "${#extra[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${extra[*]} (apt-get install -y ${extra[*]})" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${extra[@]}" >/dev/null
  else
    echo "setup: ${extra[*]} missing (TLS tests and kvm-hv demo --tls; instance disk tests):" >&2
    echo "  Debian/Ubuntu: sudo apt-get install -y ${extra[*]}" >&2
  fi
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build >/dev/null
