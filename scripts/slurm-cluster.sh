#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for the tests of `--launcher slurm`
# (tests/slurm.rs). As root on Debian:
#   scripts/slurm-cluster.sh up     install slurm-wlm and munge if missing, write
#                                   the configuration, start munged, slurmctld and
#                                   slurmd, wait until the node is idle
#   scripts/slurm-cluster.sh down   stop the daemons this script started (munged
#                                   only if it was not running before)
# `up` is idempotent: a second call with the cluster running only checks it.
# The configuration (/etc/slurm/slurm.conf, marked as written by this script;
# an existing configuration of anything else is never touched) is CPU-only,
# one node named after this host with all its cores, and settings that work
# without systemd or cgroup delegation (containers): processes tracked through
# /proc, no task binding, no accounting database.
set -euo pipefail

STATE=${GDA_SLURM_STATE:-/var/spool/gda-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by gda scripts/slurm-cluster.sh"

die() { echo "slurm-cluster: $*" >&2; exit 1; }
say() { echo "slurm-cluster: $*" >&2; }

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_idle() {
  local s
  s=$(timeout 5 sinfo -h -N -o '%T' 2>/dev/null | head -n 1) || return 1
  [ "$s" = idle ] || [ "$s" = mixed ] || [ "$s" = allocated ]
}

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
    && command -v munged >/dev/null && return 0
  command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get to install them"
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || die "apt-get update failed"
  apt-get install -y -qq slurm-wlm munge >/dev/null || die "apt-get install slurm-wlm munge failed"
}

write_config() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script; refusing to replace a real cluster's configuration"
  fi
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  # Leave some memory to the system; Slurm refuses a node that has less than it claims.
  mem=$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$STATE/log"
  cat > "$CONF.tmp" <<EOF
$MARK
# One CPU-only node on localhost for tests; see the script for why each setting.
ClusterName=gda-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No systemd, no cgroup delegation in a container: track processes via /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Finished jobs are also written here (sacct needs slurmdbd; gda does without).
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# Short waits: a test cancels and requeues tasks.
KillWait=10
MinJobAge=600
SchedulerParameters=batch_sched_delay=0,sched_interval=2
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
  # slurmd reads cgroup.conf even with cgroup-free plugins; 22.05 has no
  # CgroupPlugin=disabled, and v1 without automount is inert here.
  printf '%s\nCgroupPlugin=cgroup/v1\nCgroupAutomount=no\n' "$MARK" > /etc/slurm/cgroup.conf
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=128 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "starting munged"
    su -s /bin/sh munge -c "/usr/sbin/munged --force" || die "munged did not start (see /var/log/munge/munged.log)"
    touch "$STATE/munged.started"
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
    die "munged does not answer (see /var/log/munge/munged.log)"
  fi
}

up() {
  [ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts the Slurm daemons)"
  install_packages
  write_config
  start_munge
  if ! running "$STATE/slurmctld.pid"; then
    say "starting slurmctld"
    /usr/sbin/slurmctld -c || die "slurmctld did not start: $(tail -n 5 "$STATE/log/slurmctld.log" 2>/dev/null)"
  fi
  if ! running "$STATE/slurmd.pid"; then
    say "starting slurmd"
    /usr/sbin/slurmd || die "slurmd did not start: $(tail -n 5 "$STATE/log/slurmd.log" 2>/dev/null)"
  fi
  for _ in $(seq 120); do
    if node_idle; then
      say "up: $(sinfo -h -N -o '%N %T %c CPUs %m MB')"
      return 0
    fi
    # A node that was marked down by an earlier run comes back here.
    scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    sleep 0.5
  done
  die "the node did not become idle within 60 s: $(sinfo -N 2>&1 | tail -n 2); logs in $STATE/log"
}

down() {
  local f pid
  [ -f "$STATE/munged.started" ] && rm -f "$STATE/munged.started" && MUNGED_PID=/run/munge/munged.pid
  for f in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" ${MUNGED_PID:-}; do
    if running "$f"; then
      pid=$(cat "$f")
      kill "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  say "down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
