#!/usr/bin/env bash
# The local tier with real MPI ranks (issue 13): 4 ranks as 2 "nodes" of
# this machine (CKPT_NODE, and a local folder per node), durable every 3rd
# save.  Each node's folder holds only its ranks' files; a restore reads
# the local copies bit-exact, falls back to DIR for a node whose folder is
# gone or whose copy is damaged (named in the log), and a rank SIGKILLed in
# its node's local commit leaves that node's previous local step.  A rank
# SIGKILLed in the durable pass of a save (its done-record, rank 0's commit
# rename) leaves DIR's previous checkpoint, restored bit-exact from DIR
# alone, and the save's local commits, at most one partial folder per tier,
# removed at the next open.  A job of 2 or 6 ranks restores a 4-rank save
# from DIR, its log saying why not from the local tier.
# usage: tiers.sh MPI_JOB MPIRUN [MPIRUN_FLAGS...]
name=tiers
# Rank r is on node n(r/2), whose local folder is $l/n(r/2).
. "$(dirname "$0")/nodes.sh"
export CKPT_DURABLE_EVERY=3

run series "$d" 1 5
# Saves 1 and 4 of 5 are durable, and ckpt_close drained save 5 (it was
# local-only); every save is local on both nodes.
[ "$(steps "$d")" = "step-000000000001 step-000000000004 step-000000000005 " ] || fail "durable: $(steps "$d")"
for n in 0 1; do
  [ "$(steps "$l/n$n" | wc -w)" = 5 ] || fail "node $n: $(steps "$l/n$n")"
  files=$(ls "$l/n$n/step-000000000005" | grep '^rank-' | tr '\n' ' ')
  want="rank-0000$((2 * n)).h5 rank-0000$((2 * n + 1)).h5 "
  [ "$files" = "$want" ] || fail "node $n holds $files, not $want"
done

CKPT_TEST_WANT_TIERS=LLLL run restore "$d" 5

# Node n1 lost its folder: its ranks read step 5 from DIR.
rm -rf "$l/n1"
CKPT_TEST_WANT_TIERS=LLDD run restore "$d" 5

# Rank 0's local file of step 5 is damaged (cut short): rank 0, and rank 1,
# which reads replicated tensors from it, read DIR's copy.
f=$l/n0/step-000000000005/rank-00000.h5
truncate -s $(( $(stat -c %s "$f") - 4096 )) "$f"
CKPT_TEST_WANT_TIERS=DDDD run restore "$d" 5 2>"$top/corrupt.log" || { cat "$top/corrupt.log"; fail "restore"; }
grep -q "rank 0: the local copy of step 5" "$top/corrupt.log" || { cat "$top/corrupt.log"; fail "the log does not name rank 0's local copy"; }

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

# A rank SIGKILLed in the durable pass of step S, the job's first save
# (durable): CKPT_TEST_CRASH_AT names the site, rank $2 is killed.
partials() { ls "$1" | grep -c partial || true; }
newest() { steps "$1" | tr ' ' '\n' | grep . | tail -1 | sed 's/^step-0*//'; }
drain_kill() {
  local s=$1 rank=$2 name
  name=$(printf 'step-%012d' "$s")
  if run series "$d" "$s" "$s" "$rank" >"$top/drain.log" 2>&1; then
    cat "$top/drain.log"; fail "the job with rank $rank killed at $CKPT_TEST_CRASH_AT succeeded"
  fi
  [ ! -e "$d/$name" ] || fail "DIR committed step $s after the kill at $CKPT_TEST_CRASH_AT"
  [ "$(newest "$d")" = 6 ] || fail "DIR's newest is $(newest "$d"), not 6"
  # The kill came inside the durable pass: its partial folder is there.
  [ "$(partials "$d")" = 1 ] || fail "DIR holds $(partials "$d") partial folders, not 1"
  for t in "$l/n0" "$l/n1"; do
    [ "$(partials "$t")" -le 1 ] || fail "more than one partial folder in $t: $(ls "$t")"
  done
  # Node n0's ranks committed locally before the durable pass began.
  [ -d "$l/n0/$name" ] || fail "node n0 lost its local commit of step $s"
  # DIR alone (no local tier): its previous checkpoint, bit-exact; the open
  # removes DIR's partial folder (mpi_job checks).
  "${mpirun[@]}" -np 4 "$job" restore "$d" 6 || fail "DIR's step 6 after the kill at $CKPT_TEST_CRASH_AT"
  # Both tiers: the newest step both nodes hold locally (n1's ranks may have
  # been killed before their own local commit of step S).
  local want
  want=$(newest "$l/n1")
  [ "$want" -le "$s" ] || fail "node n1 holds step $want"
  CKPT_TEST_WANT_TIERS=LLLL run restore "$d" "$want" || fail "local restore after the kill at $CKPT_TEST_CRASH_AT"
  for t in "$l/n0" "$l/n1"; do
    [ "$(partials "$t")" = 0 ] || fail "a partial folder in $t survived the open"
  done
}
CKPT_TEST_CRASH_AT=done:1 drain_kill 8 1   # rank 1's durable done-record
CKPT_TEST_CRASH_AT=rename:1 drain_kill 9 0 # rank 0's durable commit rename

# Other rank counts: local copies serve only the job size that saved them,
# so 2 ranks (one per node: every saved file would be reachable) and 6 ranks
# (3 nodes) read DIR's step 6, and the log says why not the local copies.
CKPT_TEST_WANT_TIERS=DD run_on 2 1 restore "$d" 6 2>"$top/two.log" || { cat "$top/two.log"; fail "restore on 2 ranks"; }
[ -n "${CKPT_TEST_SHOW_LOG:-}" ] && cat "$top/two.log" >&2
grep -q "saved by 4 ranks, not 2" "$top/two.log" || { cat "$top/two.log"; fail "the 2-rank log does not say why not local"; }
CKPT_TEST_WANT_TIERS=DDDDDD run_on 6 2 restore "$d" 6 2>"$top/six.log" || { cat "$top/six.log"; fail "restore on 6 ranks"; }
grep -q "saved by 4 ranks, not 6" "$top/six.log" || { cat "$top/six.log"; fail "the 6-rank log does not say why not local"; }
echo "tiers: ok"
