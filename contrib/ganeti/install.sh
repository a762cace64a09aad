#!/bin/bash
# Makes Ganeti's "kvm" hypervisor run through this checkout's kvm-hv CLI, on this node.
#
# usage (root):  contrib/ganeti/install.sh [--no-restart]           # install
#                contrib/ganeti/install.sh --remove [--force] [--no-restart]  # put the stock class back
#
# What it does (docs/ganeti.md): copies hv_kvmhv.py into Ganeti's hypervisor package,
# diverts (dpkg-divert) the package's hypervisor/__init__.py to __init__.py.stock and writes
# a copy of it whose HT_KVM entry names hv_kvmhv.KvmHvHypervisor, writes
# /etc/ganeti/kvm-hv.conf (the node and dist/cli/main.js of this checkout), then restarts
# ganeti-noded (it imports the class map once; each job and RPC child uses it). A package
# upgrade writes the new __init__.py to the diverted name: run install.sh again after one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
remove=0 restart=1 force=0
for a in "$@"; do
  case "$a" in
    --remove) remove=1 ;;
    --force) force=1 ;;
    --no-restart) restart=0 ;;
    *) sed -n 2,12p "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
share=$(readlink -f /usr/share/ganeti/default 2>/dev/null || true)
hvdir=$share/ganeti/hypervisor
[ -f "$hvdir/hv_kvm/__init__.py" ] || { echo "install.sh: Ganeti's KVM hypervisor not found under ${share:-/usr/share/ganeti} (apt-get install ganeti)" >&2; exit 1; }
init=$hvdir/__init__.py
stock=$hvdir/__init__.py.stock
conf=/etc/ganeti/kvm-hv.conf

restart_noded() {
  [ "$restart" = 1 ] || return 0
  # Only where this node runs one (a node not yet in a cluster has none).
  if /usr/lib/ganeti/daemon-util check ganeti-noded >/dev/null 2>&1; then
    /usr/lib/ganeti/daemon-util stop ganeti-noded
    /usr/lib/ganeti/daemon-util start ganeti-noded
    echo "ganeti-noded restarted"
  fi
}

if [ "$remove" = 1 ]; then
  # The stock class does not see kvm-hv's instances (another run directory): Ganeti would
  # take them for stopped and could start them a second time.
  live=()
  for f in /var/run/ganeti/kvm-hv/pid/*; do
    [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && live+=("$(basename "$f")")
  done
  if [ "${#live[@]}" -gt 0 ] && [ "$force" = 0 ]; then
    echo "install.sh: kvm-hv runs instance(s) on this node: ${live[*]}; stop them (gnt-instance shutdown) or migrate them away first (--force removes anyway)" >&2
    exit 1
  fi
  if dpkg-divert --list "$init" | grep -q .; then
    rm -f "$init"
    dpkg-divert --quiet --local --rename --remove "$init"
  fi
  rm -f "$hvdir/hv_kvmhv.py" "$conf"
  rm -rf "$hvdir/__pycache__/hv_kvmhv."*
  echo "kvm-hv removed: Ganeti's stock KVM class is back ($init)"
  restart_noded
  exit 0
fi

cli=$repo/dist/cli/main.js
[ -f "$cli" ] || { echo "install.sh: $cli missing: run 'npm run build' in $repo first" >&2; exit 1; }
node=$(command -v node) || { echo "install.sh: node not found in PATH" >&2; exit 1; }
"$node" "$cli" --version >/dev/null || { echo "install.sh: '$node $cli --version' failed" >&2; exit 1; }

if ! dpkg-divert --list "$init" | grep -q .; then
  dpkg-divert --quiet --local --rename --divert "$stock" --add "$init"
fi
grep -q 'constants.HT_KVM: hv_kvm.KVMHypervisor,' "$stock" || {
  echo "install.sh: $stock has no 'constants.HT_KVM: hv_kvm.KVMHypervisor,' line: unknown Ganeti version" >&2; exit 1; }
install -m 0644 "$here/hv_kvmhv.py" "$hvdir/hv_kvmhv.py"
sed -e 's/^from ganeti.hypervisor import hv_kvm$/from ganeti.hypervisor import hv_kvm\nfrom ganeti.hypervisor import hv_kvmhv  # kvm-hypervisor (contrib\/ganeti\/install.sh)/' \
    -e 's/constants.HT_KVM: hv_kvm.KVMHypervisor,/constants.HT_KVM: hv_kvmhv.KvmHvHypervisor,/' \
    "$stock" > "$init.tmp"
mv "$init.tmp" "$init"
printf '# Written by %s: the kvm-hv command of this node.\nKVM_HV_CLI=%s %s\n' "$here/install.sh" "$node" "$cli" > "$conf"
echo "kvm-hv installed: Ganeti's kvm hypervisor is hv_kvmhv.KvmHvHypervisor, running $node $cli"
restart_noded
