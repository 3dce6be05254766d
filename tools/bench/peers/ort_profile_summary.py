"""Where ONNX Runtime's time goes: a profile of ort_bench.js summed by op type.

  /usr/bin/python3 -m tools.bench.peers.ort_profile_summary PROFILE.json [--top 15]

PROFILE.json is what `ort_bench.js --profile PREFIX` (or
`benchmark_peers.py --ort_profile`) wrote: ONNX Runtime's Chrome-trace
events. Prints, per op type (after ONNX Runtime's fusions: FusedMatMul,
BiasGelu, ...), milliseconds per session run, share of all node time and
calls per run. The runs of every batch size in the profile are pooled, so
profile one batch size at a time.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path


def summarize(events: list[dict]) -> tuple[int, dict[str, tuple[float, int]]]:
    """(session runs, {op type: (total microseconds, calls)})."""
    runs = sum(1 for e in events
               if e.get("cat") == "Session" and e.get("name") == "model_run")
    micros, calls = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            op = e.get("args", {}).get("op_name", "?")
            micros[op] += e["dur"]
            calls[op] += 1
    return runs, {op: (micros[op], calls[op]) for op in micros}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    runs, ops = summarize(json.loads(args.profile.read_text()))
    runs = max(runs, 1)
    total = sum(us for us, _ in ops.values()) or 1
    print(f"{runs} runs, {total / 1e3 / runs:.2f} ms of node time per run")
    ranked = sorted(ops.items(), key=lambda item: -item[1][0])
    for op, (us, n) in ranked[:args.top]:
        print(f"{op:<24}{us / 1e3 / runs:10.2f} ms/run{100 * us / total:7.1f}%"
              f"{n / runs:8.0f} calls/run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
