"""The engine against its peers, in one run, on the same machine and weights.

  /usr/bin/python3 -m tools.bench.benchmark_peers [--models vmoe-tiny-224,vit-tiny-224]
      [--batches 1,16] [--seconds 10] [--rounds 1] [--threads N]
      [--runtimes engine,engine-bf16,onnxruntime,torch-onednn,torch-stock]
      [--json_out FILE] [--quick]

For each model (a name from tools/model/configs/ or a config path), with the
random weights of `tools.model.export_model --random-seed 1` (in
models/NAME-random, as BENCHMARKS.md's engine figures), it measures:

  engine        build/engine/engine_bench (oneDNN), float32
  engine-bf16   the same with --dtype bf16 (bf16 matmuls, f32 accumulation);
                its logits are held to 5% of the largest reference logit
  onnxruntime   onnxruntime-node (CPU provider) on an ONNX export in which each
                image computes only its k experts (peers/export_onnx.py,
                ort_bench.js)
  torch-onednn  PyTorch eager, nn.Linear through oneDNN (peers/torch_bench.py)
  torch-stock   PyTorch eager as Debian ships it (reference BLAS)

and first the machine's matmul FLOP rate, f32 and bf16
(build/engine/matmul_roofline). Every runtime uses --threads compute threads
(default: one per core; ONNX Runtime inter-op 1), runs alone (never two at
once), excludes its warm-up, and has its logits checked against the PyTorch
reference (tools/model/vmoe_reference.py) on the same images before it is timed:
max |difference| < 1e-3 or the benchmark stops. With --rounds N the sequence
of runtimes is repeated N times, alternating them, and each figure is the
best round's. Prints a table per model (images/s, ms per batch mean/P50/P99,
engine/peer ratios, the engine's share of the f32 and bf16 matmul rates) and writes
all of it as JSON with --json_out. --quick is the short form the test suite
runs: 0.3 s per measurement and a token roofline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from tools import REPO
from tools.bench.peers import report as report_lib
from tools.bench.peers import runners
from tools.bench.peers.model_flops import macs_per_image
from tools.model import CONFIGS
from tools.model.vmoe_reference import ModelConfig

ALL_RUNTIMES = ("engine", "engine-bf16", "onnxruntime", "torch-onednn",
                "torch-stock")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--models", default="vmoe-tiny-224,vit-tiny-224")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--seconds", type=float, default=None,
                        help="measurement per runtime and batch (default 10, "
                             "--quick 0.3)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--runtimes", default=",".join(ALL_RUNTIMES))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json_out", type=Path)
    parser.add_argument("--build", type=Path, default=REPO / "build")
    parser.add_argument("--models_dir", type=Path, default=REPO / "models",
                        help="where NAME-random model directories live")
    parser.add_argument("--work_dir", type=Path, default=None,
                        help="ONNX exports (default BUILD/peers)")
    parser.add_argument("--node_modules", type=Path,
                        default=runners.PEERS / "node_modules")
    parser.add_argument("--ort_profile", action="store_true",
                        help="also write ONNX Runtime per-op profiles")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 0.3 if args.quick else 10.0
    args.work_dir = args.work_dir or args.build / "peers"
    args.batches = [int(b) for b in args.batches.split(",")]
    args.runtimes = args.runtimes.split(",")
    unknown = set(args.runtimes) - set(ALL_RUNTIMES)
    if unknown:
        parser.error(f"unknown runtimes {sorted(unknown)}; "
                     f"known: {', '.join(ALL_RUNTIMES)}")
    return args


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def config_path(model: str) -> Path:
    path = Path(model)
    return path if path.suffix == ".json" else CONFIGS / f"{model}.json"


def measure(unit: str, setup, model_dir, onnx_dir, args) -> list[dict]:
    """One measuring unit's reports: the engine, ONNX Runtime, or every
    requested PyTorch variant (one process, one variant after the other)."""
    if unit == "engine":
        return [runners.run_engine(setup, model_dir, onnx_dir, args.batches)]
    if unit == "engine-bf16":
        return [runners.run_engine(setup, model_dir, onnx_dir, args.batches,
                                   dtype="bf16")]
    if unit == "onnxruntime":
        prefix = str(onnx_dir / "ort_profile") if args.ort_profile else ""
        return [runners.run_ort(setup, onnx_dir, args.batches, prefix)]
    variants = [r.removeprefix("torch-") for r in args.runtimes
                if r.startswith("torch-")]
    return runners.run_torch(setup, variants, model_dir, onnx_dir,
                             args.batches)


def benchmark_model(model: str, setup, args, roofline: dict) -> dict:
    config_file = config_path(model)
    name = config_file.stem
    config = ModelConfig.from_architecture(
        json.loads(config_file.read_text())["architecture"])
    model_dir = args.models_dir / f"{name}-random"
    onnx_dir = args.work_dir / name
    export = runners.export_onnx(config_file, model_dir, onnx_dir,
                                 verify_images=2 if args.quick else 4)
    units = [u for u in ("engine", "engine-bf16", "onnxruntime")
             if u in args.runtimes]
    if any(r.startswith("torch-") for r in args.runtimes):
        units.append("torch")
    rounds = {runtime: [] for runtime in args.runtimes}
    for _ in range(args.rounds):
        for unit in units:
            print(f"benchmark_peers: {name}: {unit}", file=sys.stderr)
            for report in measure(unit, setup, model_dir, onnx_dir, args):
                rounds[report["runtime"]].append(report)
    runtimes = {r: report_lib.best_of_rounds(reports)
                for r, reports in rounds.items()}
    macs = macs_per_image(config)
    return {"config": str(config_file.relative_to(REPO)
                          if config_file.is_relative_to(REPO) else config_file),
            "model_dir": str(model_dir), "onnx_export": export,
            "macs_per_image": macs, "runtimes": runtimes,
            "ratios": report_lib.ratios(runtimes, args.batches),
            "ratios_bf16": report_lib.ratios(runtimes, args.batches,
                                             ours="engine-bf16"),
            "roofline_fraction": report_lib.roofline_fraction(
                runtimes, args.batches, macs["total"], roofline),
            "roofline_fraction_bf16": report_lib.roofline_fraction(
                runtimes, args.batches, macs["total"], roofline,
                ours="engine-bf16", dtype="bf16")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup = runners.Setup(build=args.build, node_modules=args.node_modules,
                          threads=args.threads, seconds=args.seconds)
    print("benchmark_peers: matmul roofline", file=sys.stderr)
    roofline = runners.run_roofline(setup, args.quick)
    print(report_lib.format_roofline(roofline))
    out = {"machine": {"cpu": cpu_name(),
                       "cores": os.cpu_count(), "threads": args.threads,
                       "load_average_start": os.getloadavg()},
           "settings": {"seconds": args.seconds, "rounds": args.rounds,
                        "batches": args.batches, "quick": args.quick},
           "roofline": roofline, "models": {}}
    try:
        for model in args.models.split(","):
            summary = benchmark_model(model, setup, args, roofline)
            name = config_path(model).stem
            out["models"][name] = summary
            print(report_lib.format_model(name, summary), flush=True)
    except runners.BenchmarkError as e:
        print(f"benchmark_peers: {e}", file=sys.stderr)
        return 1
    out["machine"]["load_average_end"] = os.getloadavg()
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
