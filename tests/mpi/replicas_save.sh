#!/usr/bin/env bash
# Replicas with real MPI ranks (issue 13): 4 ranks as 2 "nodes" of this
# machine, CKPT_REPLICAS=1 (mpi_job then asks for MPI_THREAD_MULTIPLE).
# Rank r's replica is kept by rank (r + 2) % 4 on the other node, in
# LOCAL/replica-of-R/step-S: the source's three local files, byte for byte;
# a node that loses its local folder restores from them.
# usage: replicas_save.sh MPI_JOB MPIRUN [MPIRUN_FLAGS...]
name=replicas_save
. "$(dirname "$0")/nodes.sh"
export CKPT_DURABLE_EVERY=2 CKPT_REPLICAS=1
run series "$d" 1 3 >"$top/save.log" 2>&1 || { cat "$top/save.log"; fail "the save failed"; }
grep -q "replica.*not kept\|replication by rank" "$top/save.log" && { cat "$top/save.log"; fail "a replica failed"; }
# Notes come from rank 0 only: node n1's ranks read their verdict from the
# folder rather than wait for a note that cannot come.
grep -q "not sent" "$top/save.log" && { cat "$top/save.log"; fail "a note was refused"; }
for r in 0 1 2 3; do
  src=$l/n$((r / 2)) keep=$l/n$(( ((r + 2) % 4) / 2 ))/replica-of-0000$r
  [ "$(steps "$keep")" = "step-000000000001 step-000000000002 step-000000000003 " ] ||
    fail "$keep holds $(steps "$keep")"
  for s in 1 2 3; do
    sd=step-00000000000$s
    want="done-0000$r.rec manifest.h5 rank-0000$r.h5 "
    [ "$(ls "$keep/$sd" | tr '\n' ' ')" = "$want" ] || fail "$keep/$sd holds $(ls "$keep/$sd")"
    for f in manifest.h5 rank-0000$r.h5 done-0000$r.rec; do
      cmp "$src/$sd/$f" "$keep/$sd/$f" || fail "$keep/$sd/$f differs from the source's"
    done
  done
  ls "$keep" | grep -q partial && fail "a partial folder left in $keep"
done
# A node keeps only the other node's ranks' replicas.
[ "$(ls "$l/n0" | grep replica | tr '\n' ' ')" = "replica-of-00002 replica-of-00003 " ] ||
  fail "node n0 keeps $(ls "$l/n0" | grep replica)"

# End to end: the replicas the saves sent bring a lost node back.  Saves 4
# (durable: the first of this job) and 5 (local only); node n1 loses its
# local folder; every rank restores step 5 bit-exact, n1's ranks from
# n0's replicas (DIR's newest is 4: no drain at close), and n1's folder
# holds step 5 again.
CKPT_DRAIN_AT_CLOSE=0 run series "$d" 4 5 >"$top/save2.log" 2>&1 || { cat "$top/save2.log"; fail "saves 4, 5 failed"; }
[ "$(steps "$d")" = "step-000000000001 step-000000000003 step-000000000004 " ] ||
  fail "durable: $(steps "$d")"
rm -rf "$l/n1"
CKPT_TEST_WANT_TIERS=LLRR run restore "$d" 5 2>"$top/fetch.log" || { cat "$top/fetch.log"; fail "restore"; }
grep -q "rank 2: fetched its files of step 5 from rank 0" "$top/fetch.log" ||
  { cat "$top/fetch.log"; fail "the log does not name rank 2's partner"; }
[ -d "$l/n1/step-000000000005" ] || fail "node n1's local step 5 was not re-created"
CKPT_TEST_WANT_TIERS=LLLL run restore "$d" 5
# Double loss: node n1's folder and node n0's replicas of n1's ranks: the
# newest step every rank reaches is DIR's 4, n0's ranks reading their own.
rm -rf "$l/n1" "$l/n0/replica-of-00002" "$l/n0/replica-of-00003"
CKPT_TEST_WANT_TIERS=LLDD run restore "$d" 4
echo "replicas_save: ok"
