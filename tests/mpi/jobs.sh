#!/usr/bin/env bash
# Multi-rank jobs one after another on one folder, as a cluster would run
# them: a checkpoint saved on N ranks restored on M (resharding), and a job
# that loses a rank mid-save restarted from the previous checkpoint.
# usage: jobs.sh reshard|rankkill MPI_JOB MPIRUN [MPIRUN_FLAGS...]
set -euo pipefail
what=$1 job=$2
shift 2
mpirun=("$@")
dir=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-jobs-XXXXXX")
trap 'rm -rf "$dir"' EXIT

case $what in
reshard)
  "${mpirun[@]}" -np 4 "$job" save "$dir/a" 100
  for np in 1 2 3 4 6; do
    "${mpirun[@]}" -np "$np" "$job" restore "$dir/a" 100
  done
  "${mpirun[@]}" -np 2 "$job" save "$dir/b" 7
  "${mpirun[@]}" -np 4 "$job" restore "$dir/b" 7
  ;;
rankkill)
  "${mpirun[@]}" -np 4 "$job" save "$dir/k" 10
  # Rank 2 is SIGKILLed at its first data write of step 20; mpirun then
  # ends the job with an error, which is the point.
  if "${mpirun[@]}" -np 4 "$job" save "$dir/k" 20 2 >"$dir/kill.log" 2>&1; then
    cat "$dir/kill.log"; echo "the job with a killed rank succeeded" >&2; exit 1
  fi
  ls "$dir/k"
  if [ -e "$dir/k/step-000000000020" ]; then echo "step 20 was committed" >&2; exit 1; fi
  "${mpirun[@]}" -np 4 "$job" restore "$dir/k" 10
  ;;
*) echo "unknown: $what" >&2; exit 2 ;;
esac
echo "$what: ok"
