#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The GPU check's table: reads the JSON files scripts/gpu-check.sh wrote
into OUT (d2h.json, train_gpu_<size>.json, torch_ckpt.json), prints one
short table per benchmark with issue #5's targets, and writes the targets'
verdicts to OUT/targets.json.

    python3 bench/gpu_table.py OUT

Only the standard library; a missing or unreadable file is reported as such
and does not stop the rest.  Exit status 0 whether or not targets are met
(the verdicts are in the table and targets.json).
"""
import glob
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f), None
    except (OSError, ValueError) as e:
        return None, "%s: %s" % (os.path.basename(path), e)


def num(d, key, fmt="%.3f"):
    v = d.get(key) if d else None
    return fmt % v if isinstance(v, (int, float)) else "-"


def size_key(path):
    tag = os.path.basename(path)[len("train_gpu_"):-len(".json")]
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        return int(tag[:-1]) * units.get(tag[-1], 1)
    except ValueError:
        return 0


def main(out):
    verdicts = {}
    d2h, why = load(os.path.join(out, "d2h.json"))
    print("D2H snapshot (ckpt-bench d2h)")
    if d2h:
        ratio = d2h.get("snapshot_ratio")
        print("  state %.1f GiB  raw pinned %s GB/s  snapshot %s GB/s  ratio %s (target >= 0.9)"
              % (d2h.get("state_bytes", 0) / 2**30, num(d2h, "raw_gbps", "%.1f"),
                 num(d2h, "snapshot_gbps_median", "%.1f"), num(d2h, "snapshot_ratio")))
        print("  durable %s s median, ckpt_save %s us, ckpt_fence %s ms (host time)"
              % (num(d2h, "durable_s_median"), num(d2h, "save_call_us_median", "%.0f"),
                 num(d2h, "fence_call_ms_median")))
        if isinstance(ratio, (int, float)):
            verdicts["snapshot_ratio_ge_0.9"] = ratio >= 0.9
    else:
        print("  not available: %s" % why)

    print("\nTraining on the GPU (ckpt-bench train --device cuda)")
    print("  %-6s %9s %9s %9s %10s %9s %10s %10s %9s"
          % ("state", "step ms", "snap ms", "stall ms", "stall %", "overhead", "save us",
             "durable s", "restore"))
    trains = sorted(glob.glob(os.path.join(out, "train_gpu_*.json")), key=size_key)
    trains = [t for t in trains if "smoke" not in t]
    blocking_ckpt = {}
    for path in trains:
        t, why = load(path)
        tag = os.path.basename(path)[len("train_gpu_"):-len(".json")]
        if not t:
            print("  %-6s not available: %s" % (tag, why))
            continue
        print("  %-6s %9s %9s %9s %9s%% %8s%% %10s %10s %6s GB/s"
              % (tag, num(t, "step_ms_p50", "%.1f"), num(t, "snapshot_ms_p50", "%.1f"),
                 num(t, "stall_ms_p50"), num(t, "stall_pct_of_snapshot_p50", "%.2f"),
                 num(t, "overhead_pct", "%.1f"), num(t, "save_call_us_p50", "%.0f"),
                 num(t, "durable_s_p50", "%.2f"), num(t, "restore_gbps", "%.1f")))
        pct = t.get("stall_pct_of_snapshot_max")
        if isinstance(pct, (int, float)):
            verdicts["stall_le_5pct_of_copy_" + tag] = pct <= 5.0
        if isinstance(t.get("save_call_us_p50"), (int, float)):
            blocking_ckpt[t.get("state_bytes")] = t["save_call_us_p50"] / 1e6

    torch, why = load(os.path.join(out, "torch_ckpt.json"))
    print("\nPyTorch peers (bench/peers/torch_ckpt.py), medians")
    if torch:
        print("  state %.1f GiB on %s" % (torch.get("state_bytes", 0) / 2**30,
                                          torch.get("device_name") or torch.get("device")))
        print("  %-24s %12s %12s %12s %8s" % ("method", "blocking s", "snapshot s", "durable s",
                                             "GB/s"))
        for name, m in sorted((torch.get("methods") or {}).items()):
            if not m.get("available", True):
                print("  %-24s not run: %s" % (name, m.get("why", "?")))
                continue
            print("  %-24s %12s %12s %12s %8s"
                  % (name, num(m, "blocking_s_median", "%.4f"), num(m, "snapshot_s_median", "%.4f"),
                     num(m, "durable_s_median", "%.2f"), num(m, "throughput_gbps_median", "%.2f")))
        # The same state size, give or take the peers' rounding to whole tensors.
        size = torch.get("state_bytes") or 0
        ours = next((v for k, v in blocking_ckpt.items()
                     if k and abs(k - size) <= 0.05 * size), None)
        dcp = (torch.get("methods") or {}).get("dcp_async_save") or {}
        theirs = dcp.get("blocking_s_median")
        if ours and isinstance(theirs, (int, float)):
            factor = theirs / ours if ours > 0 else float("inf")
            print("  ckpt_save blocks %.6f s vs DCP async_save %.4f s: %.0fx lower (target >= 10x)"
                  % (ours, theirs, factor))
            verdicts["blocking_10x_below_dcp_async_save"] = factor >= 10
        else:
            print("  (no blocking comparison: needs train_gpu and torch at the same state size)")
    else:
        print("  not available: %s" % why)

    print("\nTargets: " + (", ".join("%s %s" % (k, "met" if v else "NOT met")
                                     for k, v in sorted(verdicts.items())) or "none measured"))
    with open(os.path.join(out, "targets.json"), "w") as f:
        json.dump(verdicts, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
