#!/usr/bin/env bash
# Restore from replicas with real MPI ranks (issue 13): 4 ranks as 2
# "nodes" of this machine, one replica each (rank r's partner is r + 2 mod
# 4, on the other node).  The replicas are copies of each rank's committed
# local files of step 5 in its partner's LOCAL/replica-of-RRRRR/step-S, as
# the save side lays them.  Node n1 loses its local folder: its ranks fetch
# their files from node n0's replicas (the log names the partner), every
# rank restores step 5 bit-exact (DIR holds only 1 and 4), node n1's local
# copy and the replicas it kept for n0 are back, and a second restore
# reads every local copy.
# usage: replicas.sh MPI_JOB MPIRUN [MPIRUN_FLAGS...]
name=replicas
. "$(dirname "$0")/nodes.sh"
export CKPT_DURABLE_EVERY=3
s=step-000000000005

run series "$d" 1 5
for r in 0 1 2 3; do
  src=$l/n$((r / 2)) dst=$l/n$((1 - r / 2))/replica-of-0000$r/$s
  mkdir -p "$dst"
  cp "$src/$s/manifest.h5" "$src/$s/rank-0000$r.h5" "$src/$s/done-0000$r.rec" "$dst/"
done
rm -rf "$l/n1"

export CKPT_REPLICAS=1
CKPT_TEST_WANT_TIERS=LLRR run restore "$d" 5 2>"$top/fetch.log" || { cat "$top/fetch.log"; fail "restore"; }
for r in 2 3; do
  grep -q "rank $r: fetched its files of step 5 from rank $((r - 2))" "$top/fetch.log" ||
    { cat "$top/fetch.log"; fail "the log does not name rank $r's partner"; }
done
[ -d "$l/n1/$s" ] || fail "node n1's local step 5 was not re-created"
ls "$l/n1" | grep -q partial && fail "a partial folder was left in node n1's folder"
for r in 0 1; do
  cmp -s "$l/n0/$s/rank-0000$r.h5" "$l/n1/replica-of-0000$r/$s/rank-0000$r.h5" ||
    fail "node n1's replica of rank $r was not re-created"
done
CKPT_TEST_WANT_TIERS=LLLL run restore "$d" 5
echo "replicas: ok"
