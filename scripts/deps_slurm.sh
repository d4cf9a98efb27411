#!/usr/bin/env bash
# Installs what tests/e2e_slurm.sh needs for its throwaway one-node SLURM cluster:
# Debian's slurm-wlm (slurmctld, slurmd, the clients and basic plugins, which carry
# mpi/pmix) and munge, plus libpmix2 for `srun --mpi=pmix` with Debian's Open MPI 4.1.
# Separate from scripts/deps.sh on purpose: graft and its other tests do not need a
# scheduler. Idempotent and quiet when everything is there. Installing does not
# start or enable any daemon (the test starts its own, with its own config).
set -euo pipefail

packages=(slurm-wlm slurmctld slurmd slurm-client slurm-wlm-basic-plugins munge libpmix2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps_slurm.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "deps_slurm.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
