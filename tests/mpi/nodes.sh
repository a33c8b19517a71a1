# Sourced by the tests that run 4 MPI ranks as 2 "nodes" of this machine
# (tiers.sh, replicas.sh, replicas_save.sh), with the script's arguments MPI_JOB MPIRUN
# [MPIRUN_FLAGS...] and $name (the prefix of its messages) set: $job, a
# temporary $top (removed on exit) with $d (DIR) and $l (the nodes' local
# folders), run (rank r on node n(r/2), CKPT_NODE and its local folder
# $l/n(r/2)), run_on NP DIV (NP ranks, rank r on node n(r/DIV)), fail and
# steps.
set -euo pipefail
job=$1
shift
mpirun=("$@")
top=$(mktemp -d "${TMPDIR:-/tmp}/ckpt-$name-XXXXXX")
trap 'rm -rf "$top"' EXIT
d=$top/durable l=$top/local
run_on() {
  local np=$1 div=$2
  shift 2
  "${mpirun[@]}" -np "$np" sh -c \
    'n=n$((${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}} / '"$div"')); CKPT_NODE=$n CKPT_LOCAL_DIR='"$l"'/$n exec "$@"' \
    sh "$job" "$@"
}
run() { run_on 4 2 "$@"; }
fail() { echo "$name: $*" >&2; exit 1; }
steps() { ls "$1" | grep -E '^step-[0-9]+$' | tr '\n' ' '; }
