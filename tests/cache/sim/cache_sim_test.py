#!/usr/bin/python3
"""cache.sim_end_to_end: expert_trace_gen and cache_sim, end to end.

  cache_sim_test.py --trace_gen BIN --cache_sim BIN --work_dir DIR

Generates small traces (image routing with dwell and drift, token routing),
replays them with cache_sim at 10%, 25% and 50% of all expert bytes and a
byte budget, and checks:
  - the table names every policy and the JSON report has every budget;
  - Belady's MIN has at least as many hits as every other policy at every
    budget (it is optimal for equal-sized experts: a property, not a
    figure);
  - no policy's peak exceeds its budget; LRU-at-peak runs at the adaptive
    cache's peak; counts add up (hits <= accesses, bytes loaded = misses x
    expert bytes);
  - the plot is a PNG when gnuplot is installed;
  - bad command lines exit 2, an unreadable trace exits 1.
Standard library and tools.harness; exits non-zero with a message on the first failure.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tools import harness
from tools.harness import check

POLICIES = ["lru", "adaptive", "lru_at_peak", "s3fifo", "static_oracle",
            "belady"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(args, expect=0):
    result = subprocess.run([str(a) for a in args], capture_output=True,
                            text=True, timeout=120)
    check(result.returncode == expect,
          f"{' '.join(map(str, args))} exited {result.returncode}, "
          f"expected {expect}:\n{result.stdout}\n{result.stderr}")
    return result


def check_budget(name, budget, expert_bytes):
    policies = budget["policies"]
    check(sorted(policies) == sorted(POLICIES), f"{name}: policies {policies}")
    optimum = policies["belady"]["hits"]
    for policy, r in policies.items():
        where = f"{name} budget {budget['budget_bytes']:.0f} {policy}"
        check(r["hits"] <= optimum, f"{where}: {r['hits']} hits > Belady's "
              f"{optimum}")
        check(r["peak_bytes"] <= budget["budget_bytes"], f"{where}: peak")
        check(r["hits"] <= r["accesses"], f"{where}: hits > accesses")
        misses = r["accesses"] - r["hits"]
        check(r["bytes_loaded"] == misses * expert_bytes,
              f"{where}: bytes loaded {r['bytes_loaded']} != misses x "
              f"{expert_bytes}")
    check(policies["lru_at_peak"]["capacity_bytes"] ==
          policies["adaptive"]["peak_bytes"], f"{name}: LRU-at-peak size")


def check_trace(args, work, name, gen_flags):
    trace = work / f"{name}.csv"
    report = work / f"{name}.json"
    plot = work / f"{name}.png"
    run([args.trace_gen, "--out", trace, "--batches", 300] + gen_flags)
    out = run([args.cache_sim, "--trace", trace, "--budget",
               "10%,25%,50%,50000000", "--json_out", report, "--plot", plot,
               "--verbose"]).stdout
    for policy in POLICIES:
        check(f"| {policy}" in out, f"{name}: table lacks {policy}:\n{out}")
    data = json.loads(report.read_text())
    check(len(data["budgets"]) == 4, f"{name}: {len(data['budgets'])} budgets")
    expert_bytes = data["distinct_bytes"] / data["distinct_experts"]
    for budget in data["budgets"]:
        check_budget(name, budget, expert_bytes)
    if shutil.which("gnuplot"):
        check(plot.read_bytes()[:8] == PNG_MAGIC, f"{name}: {plot} not a PNG")
    print(f"{name}: OK ({data['accesses']:.0f} accesses)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--trace_gen", required=True)
    parser.add_argument("--cache_sim", required=True)
    parser.add_argument("--work_dir", required=True)
    args = parser.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)

    check_trace(args, work, "image-dwell",
                ["--zipf_alpha", "1.0", "--dwell", "0.9",
                 "--drift_batches", "100"])
    check_trace(args, work, "token", ["--routing", "token", "--seed", "3"])

    run([args.cache_sim, "--trace", work / "token.csv"], expect=2)
    run([args.cache_sim, "--trace", work / "token.csv", "--budget", "0%"],
        expect=2)
    run([args.trace_gen, "--out", work / "x.csv", "--top_k", "40"], expect=2)
    run([args.cache_sim, "--trace", work / "missing.csv", "--budget", "10%"],
        expect=1)
    print("cache_sim end to end: OK")


if __name__ == "__main__":
    sys.exit(harness.main_wrapper(main))
