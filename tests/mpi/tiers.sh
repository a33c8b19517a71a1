#!/usr/bin/env bash
# The local tier with real MPI ranks (issue 13): 4 ranks as 2 "nodes" of
# this machine (CKPT_NODE, and a local folder per node), durable every 3rd
# save.  Each node's folder holds only its ranks' files; a restore reads
# the local copies bit-exact, falls back to DIR for a node whose folder is
# gone or whose copy is damaged (named in the log), and a rank SIGKILLed in
# its node's local commit leaves that node's previous local step.
# usage: tiers.sh MPI_JOB MPIRUN [MPIRUN_FLAGS...]
name=tiers
# Rank r is on node n(r/2), whose local folder is $l/n(r/2).
. "$(dirname "$0")/nodes.sh"
export CKPT_DURABLE_EVERY=3

run series "$d" 1 5
# Saves 1 and 4 of 5 are durable; every save is local on both nodes.
[ "$(steps "$d")" = "step-000000000001 step-000000000004 " ] || fail "durable: $(steps "$d")"
for n in 0 1; do
  [ "$(steps "$l/n$n" | wc -w)" = 5 ] || fail "node $n: $(steps "$l/n$n")"
  files=$(ls "$l/n$n/step-000000000005" | grep '^rank-' | tr '\n' ' ')
  want="rank-0000$((2 * n)).h5 rank-0000$((2 * n + 1)).h5 "
  [ "$files" = "$want" ] || fail "node $n holds $files, not $want"
done

CKPT_TEST_WANT_TIERS=LLLL run restore "$d" 5

# Node n1 lost its folder: the newest step every rank reaches is 4.
rm -rf "$l/n1"
CKPT_TEST_WANT_TIERS=LLDD run restore "$d" 4

# Rank 0's local file of step 4 is damaged (cut short): rank 0, and rank 1,
# which reads replicated tensors from it, read DIR's copy.
f=$l/n0/step-000000000004/rank-00000.h5
truncate -s $(( $(stat -c %s "$f") - 4096 )) "$f"
CKPT_TEST_WANT_TIERS=DDDD run restore "$d" 4 2>"$top/corrupt.log" || { cat "$top/corrupt.log"; fail "restore"; }
grep -q "rank 0: the local copy of step 4" "$top/corrupt.log" || { cat "$top/corrupt.log"; fail "the log does not name rank 0's local copy"; }

# Rank 2 (node n1's leader) is SIGKILLed at the rename of its local commit
# of step 7 (a local-only save); mpirun then fails the job.
if run series "$d" 6 7 2 >"$top/kill.log" 2>&1; then
  cat "$top/kill.log"; fail "the job with a killed rank succeeded"
fi
[ ! -e "$l/n1/step-000000000007" ] || fail "node n1 committed step 7"
[ -d "$l/n1/step-000000000006" ] || fail "node n1 lost step 6"
[ "$(ls "$l/n1" | grep -c partial || true)" -le 1 ] || fail "more than one partial folder"
CKPT_TEST_WANT_TIERS=LLLL run restore "$d" 6
ls "$l/n1" | grep -q partial && fail "the partial folder was not removed at open"
echo "tiers: ok"
