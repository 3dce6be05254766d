"""Load runs that measure the adaptive expert cache through the real gateway
(issue 4's acceptance figures): prefetch on vs off, warm-up from a usage
profile vs a cold start, and recording a routing trace for cache_sim.

Each run starts build/server/edge_gateway on 127.0.0.1 with a bounded cache
and drives it with build/loadtest/edge-loadtest (camera streams of 640x480
JPEG scenes), reading the loadtest's JSON report.

  /usr/bin/python3 -m tools.bench.cache_load_runs prefetch --model_dir M --budget_fraction 0.25
  /usr/bin/python3 -m tools.bench.cache_load_runs warmup   --model_dir M --budget_fraction 0.25
  /usr/bin/python3 -m tools.bench.cache_load_runs trace    --model_dir M --out trace.csv

Cold page cache: with --cold, a background thread asks the kernel every
--evict_period_ms to drop the expert files' pages (posix_fadvise
DONTNEED, no root needed), as on an edge box whose RAM cannot keep the
expert files cached; each expert load then reads from the disk.

Slower storage: with --storage_latency_ms and/or --storage_read_mbps the
gateway reads the model through tools/bench/slow_storage.py, a FUSE mirror of
--model_dir that delays each read (root and /dev/fuse needed); the mirror's
expert files are then dropped from the page cache as with --cold, so loads
read through the delays.
"""
import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tools import REPO, harness


def expert_files(model_dir):
    return sorted(Path(model_dir, "experts").glob("*.safetensors"))


def expert_bytes(model_dir):
    return sum(f.stat().st_size for f in expert_files(model_dir))


class PageCacheEvictor:
    """Drops the page cache of `files` every `period_s` while running."""

    def __init__(self, files, period_s):
        self.files, self.period_s = files, period_s
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self.stop.is_set():
            for f in self.files:
                fd = os.open(f, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)
            self.stop.wait(self.period_s)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@contextlib.contextmanager
def slow_storage(args, workdir):
    """Yields the model directory the gateway reads: --model_dir itself, or
    its slow_storage.py mirror while one is asked for."""
    if not (args.storage_latency_ms or args.storage_read_mbps):
        yield args.model_dir
        return
    mount = workdir / "slow-model"
    mount.mkdir()
    log_path = workdir / "slow_storage.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.bench.slow_storage",
             args.model_dir, str(mount),
             "--latency_ms", str(args.storage_latency_ms),
             "--read_mbps", str(args.storage_read_mbps)],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not (mount / "manifest.json").exists():
            harness.check(proc.poll() is None and time.monotonic() < deadline,
                          f"slow_storage.py did not mount:\n{log_path.read_text()}")
            time.sleep(0.05)
        with PageCacheEvictor(expert_files(mount),
                              args.evict_period_ms / 1e3):
            yield str(mount)
    finally:
        unmount = shutil.which("fusermount") and ["fusermount", "-u"] or ["umount"]
        subprocess.run([*unmount, str(mount)], check=False)
        proc.terminate()
        proc.wait(timeout=10)


def gateway_args(args, budget, extra):
    return ["--cache_budget_bytes", str(budget),
            "--max_batch_size", str(args.max_batch_size), *extra]


def load(args, port, metrics_port, duration_s, warmup_s, max_requests=0,
         seed=1):
    """Runs edge-loadtest; returns its JSON report."""
    flags = ["--mode", "stream", "--cameras", args.cameras, "--fps", args.fps,
             "--duration_s", duration_s, "--warmup_s", warmup_s,
             "--zipf_alpha", args.zipf_alpha,
             "--drift_period_s", args.drift_period_s, "--seed", seed,
             "--target", f"127.0.0.1:{port}", "--metrics_port", metrics_port,
             "--timeout_ms", 30000]
    if max_requests:
        flags += ["--max_requests", max_requests]
    return harness.run_loadtest(args.loadtest, flags,
                           timeout_s=float(duration_s) + 120,
                           echo_stdout=False)


def summary(report):
    lat = report["latency_ms"]
    return {"ok": report.get("answered_ok"), "throughput": report.get("throughput_ok_per_s"),
            "p50_ms": lat["p50"], "p99_ms": lat["p99"], "p99_9_ms": lat["p99_9"],
            "cache_hit_rate": (report.get("server") or {}).get("cache_hit_rate")}


def serve(args, budget, extra, log):
    return harness.start_gateway(args.gateway, args.serve_dir, log,
                            gateway_args(args, budget, extra), timeout_s=300,
                            omp_threads=None)


def run_prefetch(args, budget, workdir):
    """Alternates prefetch off/on, args.repeats times each."""
    rows = []
    files = expert_files(args.model_dir)
    for repeat in range(args.repeats):
        for prefetch in (0, args.prefetch_threads):
            extra = ["--prefetch_threads", str(prefetch),
                     "--prefetch_next_layer", "true" if prefetch else "false"]
            proc, port, mport = serve(args, budget, extra,
                                      workdir / f"prefetch{prefetch}-{repeat}.log")
            try:
                if args.cold and args.serve_dir == args.model_dir:
                    with PageCacheEvictor(files, args.evict_period_ms / 1e3):
                        report = load(args, port, mport, args.duration_s, args.warmup_s)
                else:
                    report = load(args, port, mport, args.duration_s, args.warmup_s)
            finally:
                harness.stop_process(proc)
            row = {"prefetch": bool(prefetch), "prefetch_threads": prefetch,
                   "repeat": repeat, **summary(report)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def run_warmup(args, budget, workdir):
    """Profile run, then the first N requests cold vs warmed, then the
    steady state (the same server after those N)."""
    profile = workdir / "profile.json"
    proc, port, mport = serve(args, budget, ["--cache_profile", str(profile)],
                              workdir / "profile-run.log")
    try:
        load(args, port, mport, args.duration_s, args.warmup_s)
    finally:
        harness.stop_process(proc)
    harness.check(profile.exists(), "the gateway wrote no profile at shutdown")
    rows = []
    for name, extra in (("cold start", []),
                        ("warmed from profile", ["--cache_profile", str(profile)])):
        proc, port, mport = serve(args, budget, extra, workdir / f"{name}.log")
        try:
            first = load(args, port, mport, args.duration_s, 0,
                         max_requests=args.first_requests, seed=2)
            steady = load(args, port, mport, args.duration_s, args.warmup_s, seed=3)
        finally:
            harness.stop_process(proc)
        row = {"start": name,
               "first_requests": args.first_requests,
               "first_hit_rate": summary(first)["cache_hit_rate"],
               "first_p99_ms": summary(first)["p99_ms"],
               "steady_hit_rate": summary(steady)["cache_hit_rate"],
               "steady_p99_ms": summary(steady)["p99_ms"]}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def run_trace(args, budget, workdir):
    proc, port, mport = serve(args, budget,
                              ["--expert_trace_file", str(Path(args.out).resolve())],
                              workdir / "trace-run.log")
    try:
        report = load(args, port, mport, args.duration_s, args.warmup_s)
    finally:
        harness.stop_process(proc)
    print(json.dumps(summary(report)))
    return [summary(report)]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["prefetch", "warmup", "trace"])
    p.add_argument("--model_dir", required=True)
    p.add_argument("--budget_fraction", type=float, default=0.25)
    p.add_argument("--gateway", default=str(REPO / "build/server/edge_gateway"))
    p.add_argument("--loadtest", default=str(REPO / "build/loadtest/edge-loadtest"))
    p.add_argument("--cameras", default="8")
    p.add_argument("--fps", default="2")
    p.add_argument("--zipf_alpha", default="1.0")
    p.add_argument("--drift_period_s", default="0")
    p.add_argument("--max_batch_size", default="8")
    p.add_argument("--duration_s", default="30")
    p.add_argument("--warmup_s", default="5")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cold", action="store_true")
    p.add_argument("--evict_period_ms", type=float, default=100)
    p.add_argument("--first_requests", type=int, default=1000)
    p.add_argument("--prefetch_threads", type=int, default=1,
                   help="the gateway's prefetch_threads in the prefetch-on runs")
    p.add_argument("--storage_latency_ms", type=float, default=0.0,
                   help="read the model through slow_storage.py with this "
                        "wait per read request")
    p.add_argument("--storage_read_mbps", type=float, default=0.0,
                   help="... and/or this shared read bandwidth (MB/s)")
    p.add_argument("--out", default="trace.csv")
    p.add_argument("--json_out")
    args = p.parse_args()
    budget = int(expert_bytes(args.model_dir) * args.budget_fraction)
    print(f"expert bytes {expert_bytes(args.model_dir)}, budget {budget}")
    with tempfile.TemporaryDirectory() as tmp:
        runner = {"prefetch": run_prefetch, "warmup": run_warmup,
                  "trace": run_trace}[args.what]
        with slow_storage(args, Path(tmp)) as serve_dir:
            args.serve_dir = serve_dir
            rows = runner(args, budget, Path(tmp))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(harness.main_wrapper(main))
