#!/bin/bash
# A real two-node Ganeti 3.0 cluster (Debian's package) on one machine, for the Ganeti
# integration test (test/ganeti/cluster.qemu.test.ts) and by hand. Each node is a network + UTS +
# private mount namespace with its own /var/lib/ganeti, /var/log/ganeti, /run/ganeti,
# /run/lock, /etc/ssh, /root/.ssh, /etc/hosts and /run/sshd.pid; /srv/ganeti is shared, so
# the `sharedfile` disk template gives migratable instances. KVM under TCG (kvm_flag=disabled).
# Adapted from the reference lab in the team's shared tools.
#
# usage (root):  lab.sh up        # namespaces, sshd, cluster init, node add, dummy OS
#                lab.sh nx n1 gnt-cluster verify    # run a command "on" a node
#                lab.sh restart-noded               # after contrib/ganeti/install.sh
#                lab.sh down      # stop everything this script started, remove lab state
# env: LAB (default /srv/gnt-lab). Needs: apt-get install -y ganeti
set -uo pipefail
LAB=${LAB:-/srv/gnt-lab}
SUB=198.51.100            # TEST-NET-2; exists only inside the lab namespaces
nx() { local n=$1; shift; nsenter -t "$(cat "$LAB/$n.holder.pid")" -m -u -n -- "$@"; }

up_ns() {
  [ -e /usr/sbin/gnt-cluster ] || { echo "lab.sh: apt-get install -y ganeti first" >&2; exit 1; }
  [ ! -e "$LAB/n1.holder.pid" ] || { echo "lab.sh: a lab is up already ($LAB): lab.sh down first" >&2; exit 1; }
  mkdir -p "$LAB" /srv/ganeti/file-storage /srv/ganeti/shared-file-storage
  [ -d /run/ganeti ] || { mkdir /run/ganeti; touch "$LAB/created-run-ganeti"; }
  [ -d /run/sshd ] || { mkdir /run/sshd; touch "$LAB/created-run-sshd"; }
  [ -e /run/sshd.pid ] || { : > /run/sshd.pid; touch "$LAB/created-run-sshd-pid"; }
  [ -e /etc/ganeti/file-storage-paths ] || touch "$LAB/created-file-storage-paths"
  printf '127.0.0.1 localhost\n%s.11 node1.example.test node1\n%s.12 node2.example.test node2\n%s.100 cluster.example.test cluster\n' \
    $SUB $SUB $SUB > "$LAB/hosts"
  printf '/srv/ganeti/file-storage\n/srv/ganeti/shared-file-storage\n' > /etc/ganeti/file-storage-paths
  ip netns add gnt-sw; ip -n gnt-sw link set lo up
  ip -n gnt-sw link add br0 type bridge; ip -n gnt-sw link set br0 up
  for i in 1 2; do
    local N=n$i d=$LAB/n$i
    mkdir -p "$d"/{lib,log,run,lock,etcssh,rootssh}; : > "$d/sshd.pid"
    cp -a /var/lib/ganeti/. "$d/lib/"; cp -a /var/log/ganeti/. "$d/log/"
    cp -a /etc/ssh/. "$d/etcssh/"; rm -f "$d"/etcssh/ssh_host_*
    for t in rsa ecdsa ed25519; do ssh-keygen -q -t $t -N '' -f "$d/etcssh/ssh_host_${t}_key"; done
    chmod 700 "$d/rootssh"
    ip netns add gnt-$N
    ip link add sw-$N netns gnt-sw type veth peer name eth0 netns gnt-$N
    ip -n gnt-sw link set sw-$N master br0 up
    ip -n gnt-$N link set lo up; ip -n gnt-$N link set eth0 up
    ip -n gnt-$N addr add $SUB.1$i/24 dev eth0
    ip netns exec gnt-$N unshare --mount --uts --propagation private -- bash -c "
      mount --bind $d/lib /var/lib/ganeti; mount --bind $d/log /var/log/ganeti
      mount --bind $d/run /run/ganeti;     mount --bind $d/lock /run/lock
      mount --bind $d/etcssh /etc/ssh;     mount --bind $d/rootssh /root/.ssh
      mount --bind $LAB/hosts /etc/hosts;  mount --bind $d/sshd.pid /run/sshd.pid
      hostname node$i.example.test
      exec sleep infinity" </dev/null >/dev/null 2>&1 &
    echo $! > "$LAB/$N.holder.pid"   # ip netns exec -> unshare -> bash -> sleep all exec: one pid
  done
  sleep 1
  for n in n1 n2; do nx $n /usr/sbin/sshd; done     # its pid file /run/sshd.pid is per node
  nx n1 ssh-keygen -q -t rsa -b 2048 -N '' -f /root/.ssh/id_rsa
  cp "$LAB/n1/rootssh/id_rsa.pub" "$LAB/n1/rootssh/authorized_keys"
}

up_cluster() {
  nx n1 gnt-cluster init --enabled-hypervisors=kvm --enabled-disk-templates=file,sharedfile \
    --file-storage-dir=/srv/ganeti/file-storage --shared-file-storage-dir=/srv/ganeti/shared-file-storage \
    --master-netdev=eth0 --nic-parameters=mode=routed,link=100 --no-etc-hosts \
    --ssh-key-type=rsa --ssh-key-bits=2048 \
    -H kvm:kvm_path=/usr/bin/qemu-system-x86_64,kernel_path=,initrd_path=,kvm_flag=disabled,vnc_bind_address=,serial_console=true \
    cluster.example.test
  # Small instances must fit the instance policy.
  nx n1 gnt-cluster modify --ipolicy-bounds-specs=min:memory-size=32,disk-size=32,nic-count=0,cpu-count=1,disk-count=1,spindle-use=1/max:memory-size=32768,disk-size=1048576,nic-count=8,cpu-count=8,disk-count=16,spindle-use=12
  # init rotated root's key: let node1 log into node2 with it (what an admin does before node add).
  cp "$LAB/n1/rootssh/authorized_keys" "$LAB/n2/rootssh/authorized_keys"
  nx n1 gnt-node add --no-ssh-key-check node2.example.test </dev/null
  # A dummy OS (API 20): the disk stays as Ganeti created it.
  if [ ! -d /srv/ganeti/os/dummy ]; then
    mkdir -p /srv/ganeti/os/dummy; touch "$LAB/created-os-dummy"
    (cd /srv/ganeti/os/dummy && echo 20 > ganeti_api_version && echo default > variants.list && : > parameters.list &&
      for s in create import export rename verify; do printf '#!/bin/sh\nexit 0\n' > $s; chmod +x $s; done)
  fi
}

restart_noded() {
  for n in n1 n2; do
    nx $n /usr/lib/ganeti/daemon-util stop ganeti-noded; nx $n /usr/lib/ganeti/daemon-util start ganeti-noded
  done
}

# Every QEMU of a node, stock or kvm-hv, by the pid files of both run directories.
qemu_pids() {
  local n=$1 f
  for f in "$LAB/$n/run/kvm-hypervisor/pid/"* "$LAB/$n/run/kvm-hv/pid/"*; do
    [ -s "$f" ] && cat "$f"
  done 2>/dev/null
}

down() {
  local n p
  for n in n1 n2; do
    [ -s "$LAB/$n.holder.pid" ] && kill -0 "$(cat "$LAB/$n.holder.pid")" 2>/dev/null || continue
    timeout 60 nsenter -t "$(cat "$LAB/$n.holder.pid")" -m -u -n -- /usr/lib/ganeti/daemon-util stop-all
    for p in $(qemu_pids $n); do kill "$p" 2>/dev/null; done
    [ -s "$LAB/$n/sshd.pid" ] && kill "$(cat "$LAB/$n/sshd.pid")" 2>/dev/null
  done
  sleep 2
  for n in n1 n2; do
    for p in $(qemu_pids $n); do kill -9 "$p" 2>/dev/null; done
    [ -s "$LAB/$n.holder.pid" ] && kill "$(cat "$LAB/$n.holder.pid")" 2>/dev/null
  done
  for ns in gnt-n1 gnt-n2 gnt-sw; do ip netns del $ns 2>/dev/null; done
  [ -e "$LAB/created-file-storage-paths" ] && rm -f /etc/ganeti/file-storage-paths
  [ -e "$LAB/created-run-sshd-pid" ] && rm -f /run/sshd.pid
  [ -e "$LAB/created-run-sshd" ] && rmdir /run/sshd 2>/dev/null
  [ -e "$LAB/created-os-dummy" ] && rm -rf /srv/ganeti/os/dummy
  [ -e "$LAB/created-run-ganeti" ] && rmdir /run/ganeti 2>/dev/null
  rm -rf /srv/ganeti/file-storage/*.example.test /srv/ganeti/shared-file-storage/*.example.test
  rm -rf "$LAB"
  rmdir /srv/ganeti/file-storage /srv/ganeti/shared-file-storage /srv/ganeti/os /srv/ganeti 2>/dev/null
  true
}

case "${1:-}" in
  up) set -e; up_ns; up_cluster ;;
  nx) shift; nx "$@" ;;
  restart-noded) restart_noded ;;
  down) down ;;
  *) sed -n 2,14p "$0"; exit 2 ;;
esac
