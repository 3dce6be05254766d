"""The PyTorch eager peer of tools/bench/benchmark_peers.py.

  /usr/bin/python3 -m tools.bench.peers.torch_bench --model DIR --verify_dir VDIR \\
      [--variants onednn,stock] [--batches 1,16] [--seconds 10] [--threads 2]

Runs the model directory's weights in PyTorch eager mode (torch.inference_mode,
torch.set_num_threads(--threads)) through vmoe_reference.forward_train: the
spec's arithmetic batched the way one would deploy it in eager PyTorch (image
routing runs each expert once on the images that chose it, so each image
computes only its k experts; attention as two einsums). Variants, measured
one after the other in this process (one torch start-up):

  stock    nn.Linear as PyTorch runs it. Debian's torch 1.13 has no MKL and
           links the generic libblas.so.3, which is the unoptimised reference
           BLAS on this machine: that is what eager PyTorch from the
           distribution gives, and it is slow.
  onednn   every nn.Linear as a 1x1 convolution through the oneDNN that torch
           bundles (vmoe_reference.use_onednn_linears): the fastest eager
           PyTorch we can run here. The attention einsums still use the BLAS.

Before timing, checks the logits against the reference VisionMoE's on
peers/export_onnx.py's verification images (VDIR) and stops with exit
status 1 if the largest |difference| reaches --tolerance. Prints a JSON list
on stdout: per variant, an object shaped as ort_bench.js's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tools.model.reference_run import load_reference
from tools.model.vmoe_reference import forward_train, use_onednn_linears

DISTINCT_BATCHES = 8   # as engine_bench: routing varies from batch to batch.
MAX_WARMUP_BATCHES = 3  # engine_bench's --warmup_batches default.


def verify(model, verify_dir: Path) -> dict:
    """Largest |logit difference| from the reference, on the verification
    batch and on its first image alone."""
    images = torch.from_numpy(np.load(verify_dir / "verify_input.npy"))
    expected = torch.from_numpy(np.load(verify_dir / "verify_logits.npy"))
    with torch.inference_mode():
        worst = (forward_train(model, images)[0] - expected).abs().max().item()
        one = (forward_train(model, images[:1])[0] - expected[:1]).abs().max()
    return {"max_abs_diff": max(worst, one.item()), "images": len(images)}


def time_batch(model, batch: int, seconds: float) -> dict:
    """Warm-up (up to MAX_WARMUP_BATCHES or half of `seconds`), then batches
    until `seconds` have passed (at least 2)."""
    size = model.config.image_size
    generator = torch.Generator().manual_seed(1000 + batch)
    inputs = [torch.randn(batch, 3, size, size, generator=generator)
              for _ in range(DISTINCT_BATCHES)]
    with torch.inference_mode():
        warm_start = time.perf_counter()
        for i in range(MAX_WARMUP_BATCHES):
            forward_train(model, inputs[i])
            if time.perf_counter() - warm_start > seconds / 2:
                break
        ms = []
        start = time.perf_counter()
        while len(ms) < 2 or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            forward_train(model, inputs[len(ms) % DISTINCT_BATCHES])
            ms.append((time.perf_counter() - t0) * 1e3)
        elapsed = time.perf_counter() - start
    ordered = sorted(ms)
    return {"batch": batch, "batches": len(ms),
            "images_per_s": batch * len(ms) / elapsed,
            "ms_per_batch_mean": sum(ms) / len(ms),
            "ms_per_batch_p50": ordered[len(ms) // 2],
            "ms_per_batch_p99": ordered[min(len(ms) - 1, int(0.99 * len(ms)))]}


def measure_variant(args, variant: str) -> dict:
    model = load_reference(args.model)
    if variant == "onednn":
        use_onednn_linears(model)
    report = {"runtime": f"torch-{variant}", "version": torch.__version__,
              "threads": torch.get_num_threads(),
              "verify": {**verify(model, args.verify_dir),
                         "tolerance": args.tolerance},
              "results": []}
    if report["verify"]["max_abs_diff"] < args.tolerance:
        for batch in map(int, args.batches.split(",")):
            report["results"].append(time_batch(model, batch, args.seconds))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--verify_dir", type=Path, required=True)
    parser.add_argument("--variants", default="onednn,stock")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tolerance", type=float, default=1e-3)
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    if not set(variants) <= {"onednn", "stock"}:
        parser.error("--variants: onednn and/or stock")
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    reports = []
    for variant in variants:
        reports.append(measure_variant(args, variant))
        if not reports[-1]["results"]:
            print(json.dumps(reports))
            print(f"torch_bench: PyTorch ({variant}) disagrees with the "
                  "reference", file=sys.stderr)
            return 1
    print(json.dumps(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
