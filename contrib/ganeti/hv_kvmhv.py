"""Ganeti's "kvm" hypervisor served by kvm-hypervisor's `kvm-hv` command.

Installed by contrib/ganeti/install.sh as ganeti/hypervisor/hv_kvmhv.py and registered in
place of the stock class for constants.HT_KVM. Ganeti builds a new hypervisor object per
call and its node daemon forks a child per RPC, so every method runs one `kvm-hv`
process (JSON out) and keeps no state: what a later call needs is on disk, in kvm-hv's
run directory (state files, runtimes, migration journals).

The class subclasses Ganeti's stock KVMHypervisor for its hvparam table (PARAMETERS),
console command and ancillary files; every VM action (QEMU argv, start, stop, reboot,
migration, status, info) goes through kvm-hv. Instances that the stock class started
before the installation (its pid file names a live QEMU) are left to the stock code until
they stop, so nothing runs twice and nothing is orphaned.
"""

import json
import logging
import os
import shlex
import stat
import subprocess
import time

from ganeti import constants
from ganeti import errors
from ganeti import objects
from ganeti.hypervisor import hv_base
from ganeti.hypervisor import hv_kvm

# Written by install.sh: the command that runs this checkout's CLI (absolute node + main.js).
CONFIG_FILE = "/etc/ganeti/kvm-hv.conf"
# kvm-hv's run directory: beside, not inside, the stock class's /var/run/ganeti/kvm-hypervisor
# (both keep a conf/<name>.runtime, in different formats).
RUN_DIR = "/var/run/ganeti/kvm-hv"
# Per-call log of commands and their wall time (the per-call cost, docs/ganeti.md).
CALL_LOG = "/var/log/ganeti/kvm-hv-calls.log"

# kvm-hv's migration states that Ganeti's master treats as "still running".
_ACTIVE = frozenset(["setup", "active", "pre-switchover", "device", "wait-unplug",
                     "cancelling", "colo"])


def _ReadConfig():
  conf = {}
  try:
    with open(CONFIG_FILE) as f:
      for line in f:
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
          key, value = line.split("=", 1)
          conf[key.strip()] = value.strip()
  except EnvironmentError as err:
    raise errors.HypervisorError("kvm-hv is not installed on this node (%s: %s);"
                                 " run contrib/ganeti/install.sh" % (CONFIG_FILE, err))
  if "KVM_HV_CLI" not in conf:
    raise errors.HypervisorError("%s has no KVM_HV_CLI line" % CONFIG_FILE)
  return conf


def _Log(args, rc, seconds):
  try:
    with open(CALL_LOG, "a") as f:
      f.write("%s %.3f rc=%s %s\n" % (time.strftime("%Y-%m-%dT%H:%M:%S"), seconds, rc,
                                      " ".join(args)))
  except EnvironmentError:
    pass


def RunCli(args, stdin=None, timeout=600, allow_fail=False, json_out=True):
  """Runs `kvm-hv ARGS --json`; returns (exit code, parsed document or None, stderr).

  kvm-hv prints exactly one JSON document with --json, also on failure (reboot and cleanup
  take no --json: json_out=False). Unless allow_fail, a non-zero exit becomes a
  HypervisorError carrying kvm-hv's own reason.
  """
  conf = _ReadConfig()
  cmd = shlex.split(conf["KVM_HV_CLI"]) + list(args) + (["--json"] if json_out else [])
  start = time.time()
  try:
    res = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
  except subprocess.TimeoutExpired:
    _Log(args, "timeout", time.time() - start)
    raise errors.HypervisorError("kvm-hv %s did not finish within %s s" % (args[0], timeout))
  _Log(args, res.returncode, time.time() - start)
  doc = None
  try:
    doc = json.loads(res.stdout) if res.stdout.strip() else None
  except ValueError:
    pass
  if res.returncode != 0 and not allow_fail:
    reason = None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
      reason = doc["error"].get("message")
    raise errors.HypervisorError("kvm-hv %s failed (exit %d): %s" %
                                 (" ".join(args[:2]), res.returncode,
                                  reason or res.stderr.strip() or "no reason given"))
  return res.returncode, doc, res.stderr


def _RunDir():
  return ["--run-dir", RUN_DIR]


def _CliHvParams(hvparams):
  """Ganeti's filled hvparams as kvm-hv wants them (None values dropped).

  Ganeti 3.0's disk_discard has a value "default" (pass nothing to QEMU) that later Ganeti
  and kvm-hv spell "ignore", QEMU's own default: it is left out, kvm-hv's default applies.
  """
  out = dict((k, v) for (k, v) in (hvparams or {}).items() if v is not None)
  if out.get(constants.HV_DISK_DISCARD) == "default":
    del out[constants.HV_DISK_DISCARD]
  return out


def _MigrationH(instance):
  """The migration hvparams of Ganeti's configuration now, for both ends (-H).

  kvm-hv would otherwise take those saved in the runtime at start; Ganeti's stock class
  reads the instance's current ones, so a `gnt-instance modify -H migration_…` applies to
  the next migration.
  """
  hvp = instance.hvparams
  keys = [constants.HV_MIGRATION_PORT, constants.HV_MIGRATION_BANDWIDTH,
          constants.HV_MIGRATION_DOWNTIME, constants.HV_KVM_MIGRATION_CAPS]
  return ["-H", "kvm:" + ",".join("%s=%s" % (k, "" if hvp.get(k) is None else hvp[k])
                                  for k in keys)]


class KvmHvHypervisor(hv_kvm.KVMHypervisor):
  """Ganeti's KVM hypervisor, every VM action done by kvm-hypervisor."""

  # The console wrapper and socat reach kvm-hv's sockets (same names, kvm-hv's folder).
  _CTRL_DIR = RUN_DIR + "/ctrl"

  @classmethod
  def _InstanceMonitor(cls, instance_name):
    return "%s/%s.monitor" % (cls._CTRL_DIR, instance_name)

  @classmethod
  def _InstanceSerial(cls, instance_name):
    return "%s/%s.serial" % (cls._CTRL_DIR, instance_name)

  @classmethod
  def _InstanceQmpMonitor(cls, instance_name):
    return "%s/%s.qmp" % (cls._CTRL_DIR, instance_name)

  # --- instances the stock class started ------------------------------------------------

  @classmethod
  def _StockRuns(cls, instance_name):
    """Whether Ganeti's stock class runs this instance (its pid file names a live QEMU)."""
    pidfile = "%s/%s" % (hv_kvm.KVMHypervisor._PIDS_DIR, instance_name)
    if not os.path.exists(pidfile):
      return False
    return hv_kvm.KVMHypervisor._InstancePidAlive(instance_name)[2]

  @classmethod
  def _StockNames(cls):
    try:
      names = os.listdir(hv_kvm.KVMHypervisor._PIDS_DIR)
    except EnvironmentError:
      return []
    return [n for n in names if cls._StockRuns(n)]

  def _Stock(self):
    """A stock object for the stock class's instances (its paths are class attributes)."""
    return hv_kvm.KVMHypervisor()

  # --- spec ------------------------------------------------------------------------------

  def _Spec(self, instance, block_devices):
    if instance.nics:
      raise errors.HypervisorError(
        "instance %s has %d NIC(s): kvm-hv opens tap devices by name and this module"
        " does not create Ganeti's taps yet; add the instance with --no-nics"
        % (instance.name, len(instance.nics)))
    disks = []
    for disk, link, _ in block_devices:
      path = os.path.realpath(link)
      kind = "block" if stat.S_ISBLK(os.stat(path).st_mode) else "file"
      disks.append({
        "uuid": disk.uuid,
        "path": path,
        "kind": kind,
        "format": "raw",
        "access": "ro" if disk.mode == constants.DISK_RDONLY else "rw",
      })
    be = instance.beparams
    spec = {
      "name": instance.name,
      "uuid": instance.uuid,
      "memory": {"maxMiB": be[constants.BE_MAXMEM],
                 "startupMiB": self._InstanceStartupMemory(instance)},
      "vcpus": be[constants.BE_VCPUS],
      "disks": disks,
      "nics": [],
      "hvparams": _CliHvParams(instance.hvparams),
    }
    if instance.network_port:
      spec["networkPort"] = instance.network_port
    return spec

  # --- life cycle ------------------------------------------------------------------------

  def StartInstance(self, instance, block_devices, startup_paused):
    if self._StockRuns(instance.name):
      raise errors.HypervisorError("instance %s already runs (started by the stock KVM class)"
                                   % instance.name)
    args = ["start", "-"] + _RunDir()
    if startup_paused:
      args.append("--paused")
    RunCli(args, stdin=json.dumps(self._Spec(instance, block_devices)))

  def StopInstance(self, instance, force=False, retry=False, name=None, timeout=None):
    if self._StockRuns(name or instance.name):
      # Ganeti's own name argument: the stock class stops "by name only" just by force.
      return self._Stock().StopInstance(instance, force=force, retry=retry, name=name,
                                        timeout=timeout)
    name = name or instance.name
    args = ["stop", name] + _RunDir()
    if force:
      args.append("--force")
    if timeout is not None:
      args += ["--timeout", str(int(timeout))]
    rc, doc, _ = RunCli(args, allow_fail=True)
    if rc != 0:
      msg = (doc or {}).get("error", {}).get("message", "") if isinstance(doc, dict) else ""
      if "is not known here" in msg:
        return  # nothing of ours runs under that name: already stopped
      raise errors.HypervisorError("kvm-hv stop %s failed: %s" % (name, msg))

  def CleanupInstance(self, instance_name):
    if self._StockRuns(instance_name):
      return self._Stock().CleanupInstance(instance_name)
    rc, _, msg = RunCli(["cleanup", instance_name] + _RunDir(), allow_fail=True,
                        json_out=False)
    if rc != 0:
      if "is not known here" not in msg:
        raise errors.HypervisorError("kvm-hv cleanup %s failed: %s" % (instance_name, msg))
    # Files the stock class may have left for this name (its instance stopped earlier).
    hv_kvm.KVMHypervisor.CleanupInstance(self._Stock(), instance_name)

  def RebootInstance(self, instance):
    if self._StockRuns(instance.name):
      return self._Stock().RebootInstance(instance)
    RunCli(["reboot", instance.name] + _RunDir(), json_out=False)

  def BalloonInstanceMemory(self, instance, mem):
    if self._StockRuns(instance.name):
      return self._Stock().BalloonInstanceMemory(instance, mem)
    RunCli(["balloon", instance.name, str(int(mem))] + _RunDir())

  # --- information -----------------------------------------------------------------------

  @staticmethod
  def _InfoTuple(info):
    if info.get("state") in ("running", "paused", "starting"):
      state = hv_base.HvInstanceState.RUNNING
    else:
      state = hv_base.HvInstanceState.SHUTDOWN
    return (info["name"], info.get("pid", -1), info.get("memoryMiB") or 0,
            info.get("vcpus") or 0, state, info.get("uptimeSeconds", 0))

  def ListInstances(self, hvparams=None):
    _, doc, _ = RunCli(["list"] + _RunDir())
    return [i["name"] for i in doc] + self._StockNames()

  def GetInstanceInfo(self, instance_name, hvparams=None):
    if self._StockRuns(instance_name):
      return self._Stock().GetInstanceInfo(instance_name, hvparams)
    rc, doc, _ = RunCli(["info", instance_name] + _RunDir(), allow_fail=True)
    if rc != 0 or not isinstance(doc, dict) or "state" not in doc:
      return None
    return self._InfoTuple(doc)

  def GetAllInstancesInfo(self, hvparams=None):
    _, doc, _ = RunCli(["list"] + _RunDir())
    stock = self._Stock()
    return ([self._InfoTuple(i) for i in doc] +
            [x for x in (stock.GetInstanceInfo(n) for n in self._StockNames()) if x])

  def GetNodeInfo(self, hvparams=None):
    args = ["node-info"] + _RunDir()
    if hvparams and hvparams.get(constants.HV_KVM_PATH):
      args += ["-H", "kvm:kvm_path=%s" % hvparams[constants.HV_KVM_PATH]]
    _, n, _ = RunCli(args)
    return {
      "memory_total": n["memoryTotalMiB"],
      "memory_free": n["memoryFreeMiB"],
      "memory_dom0": n["memoryNodeMiB"],
      "cpu_total": n["cpuTotal"],
      "cpu_dom0": n["cpuNode"],
      "cpu_nodes": n["numaNodes"],
      "cpu_sockets": n["cpuSockets"],
      constants.HV_NODEINFO_KEY_VERSION: (n["hypervisor"]["major"], n["hypervisor"]["minor"],
                                          n["hypervisor"]["micro"]),
    }

  def Verify(self, hvparams=None):
    args = ["verify"] + _RunDir()
    if hvparams and hvparams.get(constants.HV_KVM_PATH):
      args += ["-H", "kvm:kvm_path=%s" % hvparams[constants.HV_KVM_PATH]]
    rc, doc, err = RunCli(args, allow_fail=True)
    if rc == 0:
      return None
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
      return doc["error"].get("message")
    return err.strip() or "kvm-hv verify failed (exit %d)" % rc

  # --- migration -------------------------------------------------------------------------

  def MigrationInfo(self, instance):
    if self._StockRuns(instance.name):
      return self._Stock().MigrationInfo(instance)
    conf = _ReadConfig()
    cmd = shlex.split(conf["KVM_HV_CLI"]) + ["runtime", instance.name] + _RunDir()
    start = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    _Log(["runtime", instance.name], res.returncode, time.time() - start)
    if res.returncode != 0:
      raise errors.HypervisorError("kvm-hv runtime %s failed: %s" %
                                   (instance.name, res.stderr.strip()))
    return res.stdout

  @staticmethod
  def _IsOurs(info):
    """Whether migration info is kvm-hv's runtime (JSON) rather than the stock class's."""
    try:
      return isinstance(json.loads(info), dict)
    except (TypeError, ValueError):
      return False

  def AcceptInstance(self, instance, info, target):
    if not self._IsOurs(info):
      return self._Stock().AcceptInstance(instance, info, target)
    RunCli(["accept", "--runtime", "-", "--listen", target, "--name", instance.name] +
           _MigrationH(instance) + _RunDir(), stdin=info)

  def MigrateInstance(self, cluster_name, instance, target, live_migration):
    if self._StockRuns(instance.name):
      return self._Stock().MigrateInstance(cluster_name, instance, target, live_migration)
    RunCli(["step", "migrate", "--name", instance.name, "--target", target,
            "--live" if live_migration else "--non-live"] + _MigrationH(instance) + _RunDir())

  def GetMigrationStatus(self, instance):
    if self._StockRuns(instance.name) and not os.path.exists(
        "%s/conf/%s.source.migration" % (RUN_DIR, instance.name)):
      return self._Stock().GetMigrationStatus(instance)
    rc, doc, _ = RunCli(["status", "--name", instance.name] + _RunDir(), allow_fail=True)
    if rc != 0 or not isinstance(doc, dict):
      return objects.MigrationStatus(status=constants.HV_MIGRATION_FAILED)
    st = doc.get("status")
    if st in _ACTIVE:
      st = constants.HV_MIGRATION_ACTIVE
    if st not in constants.HV_KVM_MIGRATION_VALID_STATUSES:
      # "none" or unknown: no migration runs, so it did not complete.
      st = constants.HV_MIGRATION_FAILED
    ms = objects.MigrationStatus(status=st)
    if doc.get("totalBytes") is not None:
      ms.transferred_ram = doc.get("transferredBytes")
      ms.total_ram = doc.get("totalBytes")
    return ms

  def FinalizeMigrationDst(self, instance, info, success):
    if not self._IsOurs(info):
      return self._Stock().FinalizeMigrationDst(instance, info, success)
    RunCli(["step", "finalize-destination", "--name", instance.name,
            "--success" if success else "--failure"] + _RunDir())

  def FinalizeMigrationSource(self, instance, success, live):
    if self._StockRuns(instance.name) and not os.path.exists(
        "%s/conf/%s.state" % (RUN_DIR, instance.name)):
      return self._Stock().FinalizeMigrationSource(instance, success, live)
    RunCli(["step", "finalize-source", "--name", instance.name,
            "--success" if success else "--failure"] + _RunDir())

  # --- parameters ------------------------------------------------------------------------

  @classmethod
  def CheckParameterSyntax(cls, hvparams):
    # Ganeti's own checks first (its messages, its table), then kvm-hv's, which report
    # every problem at once.
    super(KvmHvHypervisor, cls).CheckParameterSyntax(hvparams)
    args = ["params", "--check"]
    spec = ",".join("%s=%s" % (k, str(v).replace(",", "\\,"))
                    for (k, v) in sorted(_CliHvParams(hvparams).items())
                    if not isinstance(v, bool))
    flags = ",".join((k if v else "no_" + k) for (k, v) in sorted(hvparams.items())
                     if isinstance(v, bool))
    joined = ",".join(x for x in (spec, flags) if x)
    if joined:
      args += ["-H", "kvm:" + joined]
    rc, doc, err = RunCli(args, allow_fail=True)
    if rc != 0:
      problems = []
      if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        e = doc["error"]
        problems = ["%s: %s" % (p.get("param") or p.get("field"), p.get("message"))
                    for p in e.get("problems", [])] or [e.get("message", "")]
      raise errors.HypervisorError("kvm-hv rejects the hypervisor parameters: %s" %
                                   ("; ".join(problems) or err.strip()))
