#!/usr/bin/env bash
# bench:ganeti: the same real two-node Ganeti 3.0 cluster (test/ganeti/lab.sh), the same
# instance (128 MiB, a guest dirtying 32 MiB at 8 MiB/s, sharedfile), Ganeti's stock KVM
# class and then kvm-hv (contrib/ganeti/install.sh) back to back: wall time of each
# Ganeti operation, ROUNDS times (default 3). Root, `apt-get install ganeti`, `npm run
# build` first. Stops everything it started and puts the stock class back on exit.
# Usage: bash bench/ganeti.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
export LAB=${LAB:-/srv/gnt-lab}
LAB_SH=test/ganeti/lab.sh
INSTALL=contrib/ganeti/install.sh
I=bench1.example.test
N1=node1.example.test N2=node2.example.test
[ "$(id -u)" = 0 ] && command -v gnt-cluster >/dev/null || { echo "bench:ganeti: needs root and the ganeti package" >&2; exit 1; }
[ -f dist/cli/main.js ] || { echo "bench:ganeti: npm run build first" >&2; exit 1; }
cleanup() { bash $LAB_SH down >/dev/null 2>&1; bash $INSTALL --remove --force --no-restart >/dev/null 2>&1 || true; }
trap cleanup EXIT
gnt() { bash $LAB_SH nx n1 "$@" >/tmp/bench-ganeti.log 2>&1 || { cat /tmp/bench-ganeti.log >&2; return 1; }; }
# One timing: prints seconds with millisecond resolution.
t() { local s e; s=$(date +%s%N); gnt "$@"; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
declare -A SUM CNT MIN MAX
record() { # variant op ms
  local k="$1|$2"
  SUM[$k]=$(( ${SUM[$k]:-0} + $3 )); CNT[$k]=$(( ${CNT[$k]:-0} + 1 ))
  if [ -z "${MIN[$k]:-}" ] || [ "$3" -lt "${MIN[$k]}" ]; then MIN[$k]=$3; fi
  if [ -z "${MAX[$k]:-}" ] || [ "$3" -gt "${MAX[$k]}" ]; then MAX[$k]=$3; fi
  printf '%-7s %-34s %6d ms\n' "$1" "$2" "$3" >&2
}
OPS=("migrate live n1->n2" "migrate live n2->n1" "migrate non-live n1->n2" "migrate non-live n2->n1" "reboot --type=soft" "shutdown --timeout=5" "startup")

rounds() { # variant
  local v=$1 r
  for r in $(seq "$ROUNDS"); do
    record "$v" "${OPS[0]}" "$(t gnt-instance migrate -f -n $N2 $I)"
    record "$v" "${OPS[1]}" "$(t gnt-instance migrate -f -n $N1 $I)"
    record "$v" "${OPS[2]}" "$(t gnt-instance migrate -f --non-live -n $N2 $I)"
    record "$v" "${OPS[3]}" "$(t gnt-instance migrate -f --non-live -n $N1 $I)"
    record "$v" "${OPS[4]}" "$(t gnt-instance reboot --type=soft $I)"
    record "$v" "${OPS[5]}" "$(t gnt-instance shutdown --timeout=5 $I)"
    record "$v" "${OPS[6]}" "$(t gnt-instance startup $I)"
  done
}

bash $INSTALL --remove --force --no-restart >/dev/null
bash $LAB_SH up >/tmp/bench-ganeti-up.log 2>&1 || { cat /tmp/bench-ganeti-up.log >&2; exit 1; }
node -e "import('$PWD/dist/testing/index.js').then(m=>m.writeGuestImage('$LAB/busy.img',{dirtyMiB:32,rateMiBps:8}))"
gnt gnt-instance add -t sharedfile -o dummy+default -s 64M -B memory=128M --no-nics --no-name-check \
  --no-ip-check -H "kvm:kernel_path=$LAB/busy.img,initrd_path=" -n $N1 $I
rounds stock
# kvm-hv takes over: the instance restarts under it (the stock class keeps what it started).
gnt gnt-instance shutdown --timeout=5 $I
bash $INSTALL --no-restart >/dev/null && bash $LAB_SH restart-noded >/dev/null 2>&1
gnt gnt-instance startup $I
[ -s "$LAB/n1/run/kvm-hv/pid/$I" ] || { echo "bench:ganeti: the instance did not start under kvm-hv" >&2; exit 1; }
rounds kvm-hv

echo
echo "Ganeti 3.0, $ROUNDS rounds, 128 MiB guest dirtying 32 MiB at 8 MiB/s (TCG): mean (min–max), ms"
printf '| %-26s | %-22s | %-22s |\n' operation "stock hv_kvm" "kvm-hv"
printf '| %-26s | %-22s | %-22s |\n' --- --- ---
for op in "${OPS[@]}"; do
  cells=()
  for v in stock kvm-hv; do
    k="$v|$op"; cells+=("$(( SUM[$k] / CNT[$k] )) (${MIN[$k]}–${MAX[$k]})")
  done
  printf '| %-26s | %-22s | %-22s |\n' "$op" "${cells[0]}" "${cells[1]}"
done
