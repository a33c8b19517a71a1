#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Turns `ckpt-bench train --json` output into a PNG: step time over the run
for the baseline and every checkpointed run, with the checkpoint steps marked.

usage: bench/plot.py TRAIN.json OUT.png
"""
import json
import sys


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py needs matplotlib (Debian: python3-matplotlib)", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        doc = json.load(f)
    if doc.get("bench") != "train":
        print(f"{argv[1]}: not the output of `ckpt-bench train --json`", file=sys.stderr)
        return 2

    runs = [doc["baseline"]] + doc["runs"]
    every, steps = doc["every"], doc["steps"]
    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=110)
    for r in runs:
        label = r["policy"]
        if "overhead_pct" in r:
            label += f" (overhead {r['overhead_pct']:.1f}%, stall p50 {r['stall_ms_p50']:.1f} ms)"
        ax.plot(range(len(r["step_ms"])), r["step_ms"], lw=1.0, label=label)
    for s in range(0, steps, every):
        ax.axvline(s, color="0.8", lw=0.6, zorder=0)
    ax.set_xlabel(f"step (grey lines: ckpt_save, every {every} steps)")
    ax.set_ylabel("step time (ms)")
    gib = doc["state_bytes"] / 2**30
    stg = doc["staging_bytes"] / 2**30
    ax.set_title(
        f"ckpt-bench train: {gib:.2f} GiB in {doc['tensors']} tensors, staging {stg:.2f} GiB, "
        f"writer {doc['writer']}, {doc['step_ms']:.0f} ms steps"
    )
    ax.legend(loc="upper right", fontsize=8)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(argv[2])
    print(f"wrote {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
