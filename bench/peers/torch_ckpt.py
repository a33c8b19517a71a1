#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The PyTorch peer benchmark: saves the state ckpt-bench train uses (N float32
tensors of nearly equal size, named layers.<i>.weight) with the checkpoint
calls a PyTorch training loop has, and reports for each how long the call
blocks the training thread and how long until the checkpoint is durable.

Methods (--methods, comma separated; default all):
  torch_save             torch.save(state, f) into one file
  dcp_save               torch.distributed.checkpoint.save
  dcp_async_save         torch.distributed.checkpoint.async_save with its
                         defaults (the call stages the state into CPU memory,
                         a thread writes it)
  dcp_async_save_pinned  async_save with a DefaultStager (pinned memory,
                         asynchronous staging, non-blocking copies): the call
                         returns before the copy is done; only where this
                         torch has async staging.  A new stager per save,
                         made inside the timed call: torch 2.11's stager
                         drops its buffers (and its copy table) after each
                         staging, so one cannot be reused

DCP runs in a single-process process group (world size 1, file:// rendezvous):
"cpu:gloo,cuda:nccl" for CUDA tensors (async_save needs a CPU backend), "gloo"
for --device cpu.

Per save, in seconds (perf_counter on the calling thread):
  blocking_s   until the call returns (async_save: until it returns its future)
  snapshot_s   until the caller may modify its tensors again: the call's return,
               except for asynchronous staging, where the staging future is
               done (the counterpart of ckpt_fence)
  durable_s    until the checkpoint is on disk: the save returned (async_save:
               its upload future is done), then every file and folder under the
               checkpoint path, and the folder holding it, is fsync'd
  throughput   state bytes / durable_s, in GB/s (1e9 bytes per second)
One warm-up save per method comes first (lazy NCCL set-up, first pinned
allocations; reported apart), then --reps saves; the summary is the median.
Each checkpoint is deleted before the next save.

Compare with ckpt-bench train on the same state (--state, --tensors): its
"save call" time is the counterpart of blocking_s, its fence stall of
snapshot_s minus the compute between save and fence, its "durable" time of
durable_s.

usage:
  bench/peers/torch_ckpt.py [--state 1G] [--tensors 1000] [--device cuda|cpu]
                            [--reps 3] [--warmup 1] [--methods LIST]
                            [--dir SCRATCH] [--dcp-threads 1] [--verify]
                            --out DIR
Writes DIR/torch_ckpt.json and prints a table.  Needs torch (2.4 or newer for
async_save; the default run is meant for torch 2.11, CUDA, one H100/H200);
about 1-2 minutes at 1 GiB.  Checkpoints go under --dir (default DIR/scratch,
removed at the end): it needs free space of about the state's size.
"""
import argparse
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

METHODS = ["torch_save", "dcp_save", "dcp_async_save", "dcp_async_save_pinned"]
LABELS = {
    "torch_save": "torch.save",
    "dcp_save": "dcp.save",
    "dcp_async_save": "dcp.async_save",
    "dcp_async_save_pinned": "dcp.async_save, pinned async staging",
}
SUFFIX = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}


def parse_size(text):
    """A byte count: digits with an optional K, M, G or T suffix (powers of
    1024, either case, optionally followed by "iB" or "B"), as ckpt-bench."""
    s = text.strip()
    digits = len(s) - len(s.lstrip("0123456789"))
    if digits == 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 512M or 1G")
    value, rest = int(s[:digits]), s[digits:].upper()
    unit = rest[0] if rest and rest[0] in "KMGT" else ""
    tail = rest[len(unit):]
    if tail not in ("", "B") and not (unit and tail == "IB"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 512M or 1G")
    return value << SUFFIX[unit]


def parse_methods(text):
    names = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METHODS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown method {', '.join(bad) or '(none)'}; choose from {', '.join(METHODS)}")
    return [m for m in METHODS if m in names]


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Blocking time and time to durable of torch.save and "
        "torch.distributed.checkpoint save/async_save on the state ckpt-bench uses.",
        epilog="See the docstring at the top of this file for what each figure means.")
    p.add_argument("--state", type=parse_size, default=parse_size("1G"),
                   help="total state size, e.g. 512M, 1G, 8G, 32G (default 1G)")
    p.add_argument("--tensors", type=int, default=1000,
                   help="number of float32 tensors the state is split into (default 1000)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                   help="where the tensors live (default cuda)")
    p.add_argument("--reps", type=int, default=3, help="measured saves per method (default 3)")
    p.add_argument("--warmup", type=int, default=1,
                   help="unmeasured saves per method first (default 1)")
    p.add_argument("--methods", type=parse_methods, default=list(METHODS),
                   help="comma-separated subset of " + ",".join(METHODS))
    p.add_argument("--backend", default=None,
                   help='process group backend (default "cpu:gloo,cuda:nccl" for cuda, '
                   '"gloo" for cpu)')
    p.add_argument("--dcp-threads", type=int, default=1,
                   help="FileSystemWriter thread_count for the DCP methods (default 1, "
                   "DCP's default)")
    p.add_argument("--dir", default=None,
                   help="scratch folder for the checkpoints (default OUT/scratch)")
    p.add_argument("--verify", action="store_true",
                   help="load the last checkpoint of each method back and compare")
    p.add_argument("--seed", type=int, default=1, help="seed of the tensor contents")
    p.add_argument("--out", required=True, help="folder for torch_ckpt.json")
    a = p.parse_args(argv)
    if a.tensors < 1 or a.reps < 1 or a.warmup < 0 or a.dcp_threads < 1:
        p.error("--tensors, --reps and --dcp-threads must be >= 1, --warmup >= 0")
    if a.state < 4 * a.tensors:
        p.error("--state must hold at least one float32 element per tensor")
    return a


# ---- the state ---------------------------------------------------------------


def make_state(torch, nbytes, ntensors, device, seed):
    """ntensors float32 tensors of (nearly) equal size, as ckpt-bench train
    makes them: each nbytes / ntensors rounded down to 4 bytes, the last one
    takes the rest (rounded down to whole elements)."""
    each = nbytes // ntensors // 4 * 4
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    state = {}
    total = 0
    for i in range(ntensors):
        n = each if i + 1 < ntensors else (nbytes - each * (ntensors - 1)) // 4 * 4
        t = torch.empty(n // 4, dtype=torch.float32, device=device)
        t.uniform_(-1.0, 1.0, generator=gen)
        state[f"layers.{i}.weight"] = t
        total += n
    return state, total


# ---- durability ----------------------------------------------------------------


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path):
    """fsyncs path (a file or a folder with everything under it) and the
    folder that holds it, so the data and the names are durable."""
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            for name in files:
                fsync_path(os.path.join(root, name))
            for name in dirs:
                fsync_path(os.path.join(root, name))
    fsync_path(path)
    fsync_path(os.path.dirname(os.path.abspath(path)))


def bytes_on_disk(path):
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def remove(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.unlink(path)


# ---- the methods -----------------------------------------------------------------


class Bench:
    def __init__(self, torch, args, scratch):
        self.torch = torch
        self.args = args
        self.scratch = scratch
        self.pg = None
        self.backend = None
        self.rendezvous = None
        self.dcp = None
        self.stager = None
        self.seq = 0

    def sync(self):
        if self.args.device == "cuda":
            self.torch.cuda.synchronize()

    def setup_dist(self):
        import torch.distributed as dist
        import torch.distributed.checkpoint as dcp

        backend = self.args.backend or ("cpu:gloo,cuda:nccl" if self.args.device == "cuda"
                                        else "gloo")
        self.rendezvous = tempfile.mkdtemp(prefix="torch_ckpt_pg_")
        init = "file://" + os.path.join(self.rendezvous, "init")
        dist.init_process_group(backend=backend, init_method=init,
                                rank=0, world_size=1)
        self.pg = dist.group.WORLD
        self.dcp = dcp
        self.backend = backend

    def close(self):
        self.close_stager()
        if self.pg is not None:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.pg = None
        if self.rendezvous:
            shutil.rmtree(self.rendezvous, ignore_errors=True)
            self.rendezvous = None

    def writer(self, path):
        from torch.distributed.checkpoint import FileSystemWriter

        return FileSystemWriter(path, thread_count=self.args.dcp_threads)

    def unavailable(self, method):
        """None, or why this torch cannot run the method."""
        if method == "dcp_async_save" and not hasattr(self.dcp, "async_save"):
            return "torch.distributed.checkpoint.async_save is missing (torch < 2.4)"
        if method == "dcp_async_save_pinned":
            import inspect

            if not hasattr(self.dcp, "async_save"):
                return "torch.distributed.checkpoint.async_save is missing (torch < 2.4)"
            if "async_stager" not in inspect.signature(self.dcp.async_save).parameters:
                return "async_save takes no async_stager (asynchronous staging needs torch >= 2.9)"
            try:
                from torch.distributed.checkpoint.staging import (  # noqa: F401
                    DefaultStager, StagingOptions)
            except ImportError as e:
                return f"no DefaultStager/StagingOptions in this torch ({e})"
        return None

    def path(self, method):
        self.seq += 1
        name = f"{method}-{self.seq}" + (".pt" if method == "torch_save" else "")
        return os.path.join(self.scratch, name)

    def save_once(self, method, state, path):
        """One save; returns (blocking_s, snapshot_s, durable_s)."""
        torch, dcp = self.torch, self.dcp
        self.sync()
        gc.collect()
        t0 = time.perf_counter()
        if method == "torch_save":
            with open(path, "wb") as f:
                torch.save(state, f)
                f.flush()
                t_block = time.perf_counter()
            t_snap = t_block
        elif method == "dcp_save":
            dcp.save(state, storage_writer=self.writer(path), process_group=self.pg)
            t_block = t_snap = time.perf_counter()
        elif method == "dcp_async_save":
            ret = dcp.async_save(state, storage_writer=self.writer(path), process_group=self.pg)
            t_block = time.perf_counter()
            t_snap = t_block
            upload = getattr(ret, "upload_completion", ret)
            staged = getattr(ret, "staging_completion", None)
            if staged is not None:  # a torch whose default stages asynchronously
                staged.result()
                t_snap = time.perf_counter()
            upload.result()
        else:  # dcp_async_save_pinned
            self.stager = self.pinned_stager()
            ret = dcp.async_save(state, storage_writer=self.writer(path), process_group=self.pg,
                                 async_stager=self.stager)
            t_block = time.perf_counter()
            staged = getattr(ret, "staging_completion", None)
            if staged is not None:
                staged.result()
            t_snap = time.perf_counter()
            getattr(ret, "upload_completion", ret).result()
        fsync_tree(path)
        t_durable = time.perf_counter()
        self.close_stager()
        return t_block - t0, t_snap - t0, t_durable - t0

    def pinned_stager(self):
        from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

        cuda = self.args.device == "cuda"
        return DefaultStager(StagingOptions(use_pinned_memory=cuda, use_shared_memory=False,
                                            use_async_staging=True, use_non_blocking_copy=cuda))

    def close_stager(self):
        if self.stager is not None:
            self.stager.close()
            self.stager = None

    def verify(self, method, state, path):
        """Loads the checkpoint back and compares every tensor; returns the
        number of tensors that differ."""
        torch = self.torch
        if method == "torch_save":
            back = torch.load(path, map_location=self.args.device, weights_only=True)
        else:
            from torch.distributed.checkpoint import FileSystemReader

            back = {k: torch.empty_like(v) for k, v in state.items()}
            self.dcp.load(back, storage_reader=FileSystemReader(path), process_group=self.pg)
        bad = sum(1 for k, v in state.items() if k not in back or not torch.equal(back[k], v))
        del back
        return bad

    def run(self, method, state):
        """Warm-up and measured saves of one method: a result dict."""
        reps, warm = [], []
        verified = None
        for i in range(self.args.warmup + self.args.reps):
            path = self.path(method)
            blocking, snapshot, durable = self.save_once(method, state, path)
            rec = {"blocking_s": blocking, "snapshot_s": snapshot, "durable_s": durable,
                   "bytes_on_disk": bytes_on_disk(path)}
            (warm if i < self.args.warmup else reps).append(rec)
            if self.args.verify and i + 1 == self.args.warmup + self.args.reps:
                verified = self.verify(method, state, path)
            remove(path)
            fsync_path(self.scratch)
        return reps, warm, verified


def summarize(reps, warm, state_bytes, verified):
    def med(key):
        return statistics.median(r[key] for r in reps)

    out = {"available": True}
    for key in ("blocking_s", "snapshot_s", "durable_s"):
        vals = [r[key] for r in reps]
        out[key + "_median"] = med(key)
        out[key + "_min"] = min(vals)
        out[key + "_max"] = max(vals)
    out["throughput_gbps_median"] = statistics.median(
        state_bytes / 1e9 / r["durable_s"] for r in reps)
    out["bytes_on_disk"] = reps[-1]["bytes_on_disk"]
    out["reps"] = reps
    out["warmup"] = warm
    if verified is not None:
        out["verify_mismatched_tensors"] = verified
    return out


def print_table(doc):
    print(f"torch {doc['torch']} on {doc['device_name']}: {doc['state_bytes'] / 2**30:.2f} GiB "
          f"in {doc['tensors']} float32 tensors; medians of {doc['reps_per_method']} "
          f"save(s) per method; durable = call + wait + fsync")
    print(f"{'method':<38} {'blocking s':>10} {'snapshot s':>10} {'durable s':>10} {'GB/s':>7}")
    for name, r in doc["methods"].items():
        label = LABELS[name]
        if not r["available"]:
            print(f"{label:<38} skipped: {r['why']}")
            continue
        print(f"{label:<38} {r['blocking_s_median']:>10.4f} {r['snapshot_s_median']:>10.4f} "
              f"{r['durable_s_median']:>10.3f} {r['throughput_gbps_median']:>7.3f}")


def main(argv):
    args = parse_args(argv)
    try:
        import torch
    except ImportError as e:
        print(f"torch_ckpt.py needs torch ({e})", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch_ckpt.py: --device cuda but torch sees no CUDA device (use --device cpu)",
              file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    scratch = args.dir or os.path.join(args.out, "scratch")
    own_scratch = args.dir is None
    os.makedirs(scratch, exist_ok=True)
    free = shutil.disk_usage(scratch).free
    if free < args.state * 1.1:
        print(f"torch_ckpt.py: {scratch} has {free / 2**30:.1f} GiB free; a checkpoint of "
              f"{args.state / 2**30:.1f} GiB needs more", file=sys.stderr)
        return 2
    if args.device == "cuda":
        torch.cuda.set_device(0)

    t = time.perf_counter()
    state, nbytes = make_state(torch, args.state, args.tensors, args.device, args.seed)
    bench = Bench(torch, args, scratch)
    bench.sync()
    print(f"state: {nbytes} bytes in {len(state)} tensors on {args.device}, "
          f"made in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    methods = {}
    try:
        bench.setup_dist()
        for m in args.methods:
            why = bench.unavailable(m)
            if why:
                methods[m] = {"available": False, "why": why}
                print(f"{m}: skipped: {why}", file=sys.stderr)
                continue
            t = time.perf_counter()
            reps, warm, verified = bench.run(m, state)
            methods[m] = summarize(reps, warm, nbytes, verified)
            print(f"{m}: {len(warm) + len(reps)} save(s) in {time.perf_counter() - t:.1f} s",
                  file=sys.stderr)
    finally:
        bench.close()
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)

    dev_name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    doc = {
        "bench": "torch_ckpt",
        "format": 1,
        "units": {"*_s": "seconds on the calling thread (time.perf_counter)",
                  "throughput_gbps_median": "state bytes / durable_s, 1e9 bytes per second",
                  "state_bytes": "bytes", "bytes_on_disk": "bytes"},
        "durable_means": "the save returned (async_save: its upload future is done), then "
                         "os.fsync of every file and folder under the checkpoint path and of "
                         "the folder holding it",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": args.device,
        "device_name": dev_name,
        "backend": bench.backend,
        "dcp_threads": args.dcp_threads,
        "state_bytes": nbytes,
        "tensors": len(state),
        "dtype": "float32",
        "reps_per_method": args.reps,
        "warmup_per_method": args.warmup,
        "methods": methods,
        "ckpt_bench_comparable": {
            "what": "blocking time of each method: how long the checkpoint call holds the "
                    "training thread; compare with ckpt-bench train's save-call time "
                    "(and snapshot_s with its fence stall plus the compute before the fence)",
            "blocking_s": {m: r["blocking_s_median"] for m, r in methods.items()
                           if r["available"]},
            "snapshot_s": {m: r["snapshot_s_median"] for m, r in methods.items()
                           if r["available"]},
        },
    }
    path = os.path.join(args.out, "torch_ckpt.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print_table(doc)
    print(f"wrote {path}")
    bad = [m for m, r in methods.items() if r.get("verify_mismatched_tensors")]
    if bad:
        print(f"verify: tensors differ after loading back: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
