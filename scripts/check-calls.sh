#!/usr/bin/env bash
# The file-level call graph of runtime/: which file calls a function that
# another file defines, read from the object files' symbol tables (nm), so
# it is what the compiler saw, not a guess from the text.  Fails when two
# or more runtime files call each other in a circle.  Prints the graph with
# -v.  Usage: scripts/check-calls.sh [-v] [BUILD_DIR]   (default: build)
set -euo pipefail
cd "$(dirname "$0")/.."
verbose=0
if [ "${1:-}" = "-v" ]; then verbose=1; shift; fi
dir=${1:-build}
objs=$(find "$dir/CMakeFiles/ckpt_obj.dir/runtime" -name '*.c.o' 2>/dev/null | sort)
if [ -z "$objs" ]; then
  echo "check-calls: no runtime objects under $dir (build first)" >&2
  exit 2
fi
for o in $objs; do
  f=$(basename "$o" .o)
  nm --defined-only -g "$o" | awk -v f="$f" '$2 ~ /^[TDBR]$/ {print "D", f, $3}'
  nm --undefined-only -g "$o" | awk -v f="$f" '{print "U", f, $2}'
done | python3 -c '
import sys
verbose = sys.argv[1] == "1"
where, uses = {}, []
for line in sys.stdin:
    kind, f, sym = line.split()
    if kind == "D":
        where[sym] = f
    else:
        uses.append((f, sym))
edges = {}
for f, sym in uses:
    g = where.get(sym)
    if g and g != f:
        edges.setdefault(f, set()).add(g)
files = sorted(set(where.values()) | set(edges))
if verbose:
    for f in files:
        print(f + " -> " + (", ".join(sorted(edges.get(f, ()))) or "(nothing)"))
# Depth-first search for a cycle.
state, stack = {}, []
def visit(f):
    state[f] = 1
    stack.append(f)
    for g in sorted(edges.get(f, ())):
        if state.get(g) == 1:
            cyc = stack[stack.index(g):] + [g]
            print("check-calls: runtime files call each other in a circle: " + " -> ".join(cyc))
            sys.exit(1)
        if g not in state:
            visit(g)
    stack.pop()
    state[f] = 2
for f in files:
    if f not in state:
        visit(f)
print(f"check-calls: {len(files)} runtime files, no circle")
' "$verbose"
