#!/bin/bash
# Install Slurm 22.05 + munge + slurm-wlm-torque (qsub/qstat/qdel wrappers over Slurm) from
# Debian bookworm, as root.  Nothing is started here: start_slurm.sh starts the daemons by hand
# (no systemd needed).  `make testbeds` runs the same apt-get line.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  slurm-wlm slurmctld slurmd slurm-client munge slurm-wlm-torque
sinfo --version
