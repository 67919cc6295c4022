#!/bin/bash
# Stop the single-node Slurm test bed started by start_slurm.sh, by PID only.
# Order matters: cancel jobs first (slurmstepd + job processes SURVIVE a slurmd stop),
# then slurmd, slurmctld, munged.
set -uo pipefail
PIDDIR=${PIDDIR:-/run/slurm-testbed}
# expected /proc/PID/comm for each pid file, so a stale/reused PID is never killed
declare -A COMM=([slurmd]=slurmd [slurmctld]=slurmctld [munged]=munged)

if [ -f "$PIDDIR/slurmctld.pid" ] && kill -0 "$(cat "$PIDDIR/slurmctld.pid")" 2>/dev/null; then
  ids=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
  if [ -n "$ids" ]; then
    echo "cancelling jobs: $ids"; scancel $ids
    for _ in $(seq 1 150); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  left=$(scontrol listpids 2>/dev/null | awk 'NR>1{print $1}' | tr '\n' ' ')
  [ -n "$left" ] && echo "WARNING: job PIDs still on node: $left"
fi
for d in slurmd slurmctld munged; do
  f="$PIDDIR/$d.pid"; [ -f "$f" ] || continue
  p=$(cat "$f")
  if [ "$(cat /proc/$p/comm 2>/dev/null)" = "${COMM[$d]}" ]; then
    t=$(date +%s%N); kill -TERM "$p"
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then echo "$d ($p) ignored TERM -> KILL"; kill -KILL "$p"; fi
    echo "stopped $d (pid $p) in $(( ($(date +%s%N) - t) / 1000000 )) ms"
  else
    echo "$d: pid $p not running (or not $d) -- skipped"
  fi
  rm -f "$f"
done
# slurmctld leaves a stale pid file behind (only ours: a daemon we did not start keeps its file)
if [ -f /run/slurmctld.pid ] && ! kill -0 "$(cat /run/slurmctld.pid)" 2>/dev/null; then
  rm -f /run/slurmctld.pid
fi
rmdir "$PIDDIR" 2>/dev/null
exit 0
