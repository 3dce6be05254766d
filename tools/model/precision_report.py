"""Accuracy of the engine's reduced-precision modes against its float32 mode
(docs/model-spec.md, "Numerics": max logit difference and top-1 agreement).

  /usr/bin/python3 -m tools.model.precision_report \\
      --engine-run build/engine/engine_run \\
      --model models/vmoe-tiny-224-random --inputs random --count 1000
  /usr/bin/python3 -m tools.model.precision_report \\
      --engine-run build/engine/engine_run \\
      --model models/fashion-vmoe --inputs fashion-mnist --count 1000

--model is a float32 model directory; its bf16 and int8 expert variants are
exported next to each other in a temporary directory (tools.model.export_model).
Every combination of expert storage (float32, bf16, int8) and engine compute
dtype (f32, bf16) runs on the same `count` inputs: random normal images
(seeded), or the first `count` Fashion-MNIST test images, normalised as the
gateway does, whose labels add an accuracy column. The baseline is float32
experts computed in f32, itself checked against PyTorch by tests/parity.
"same routing" is the share of images whose expert choices (every MoE layer;
every token with token routing) equal the baseline's: a flipped near-tie
choice explains a large logit difference on an image whose class holds.
Prints a Markdown table (and writes it as JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tools import fashion_mnist
from tools.model.export_model import (EXPERT_DTYPES, export_model,
                                      load_model_source)

# (expert storage as --expert-dtype names it, engine --dtype); the first is
# the baseline.
MODES = [("float32", "f32"), ("float32", "bf16"), ("bfloat16", "f32"),
         ("bfloat16", "bf16"), ("int8", "f32"), ("int8", "bf16")]
# Images per engine_run process: bounds the .npy files (100 images of
# 224 x 224 are 60 MB) while keeping model loads few.
CHUNK_IMAGES = 100


def make_inputs(kind: str, count: int, manifest: dict, seed: int):
    """(images [count, 3, S, S] float32, labels or None)."""
    size = manifest["architecture"]["image_size"]
    if kind == "random":
        rng = np.random.default_rng(seed)
        return rng.standard_normal((count, 3, size, size), np.float32), None
    images, labels = fashion_mnist.load("test")
    if images.shape[1] != size or count > len(images):
        raise SystemExit(f"the model takes {size}x{size} images; Fashion-MNIST "
                         f"has {len(images)} test images of 28x28")
    pre = manifest["preprocessing"]
    mean = np.asarray(pre["mean"], np.float32)[:, None, None]
    std = np.asarray(pre["std"], np.float32)[:, None, None]
    x = images[:count, None].astype(np.float32) / 255.0
    return ((np.repeat(x, 3, axis=1) - mean) / std).astype(np.float32), \
        labels[:count].astype(np.int64)


def run_engine(engine_run: str, model: Path, dtype: str, images: np.ndarray,
               batch: int, work: Path) -> tuple[np.ndarray, list]:
    """(logits, per image the JSON of its expert choices)."""
    logits, routing = [], []
    for first in range(0, len(images), CHUNK_IMAGES):
        np.save(work / "x.npy", images[first:first + CHUNK_IMAGES])
        command = [engine_run, "--model", str(model), "--input", str(work / "x.npy"),
                   "--output", str(work / "y.npy"), "--experts", str(work / "e.json"),
                   "--dtype", dtype, "--batch", str(batch)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
        logits.append(np.load(work / "y.npy"))
        routing += [_choices(image) for image in
                    json.loads((work / "e.json").read_text())["images"]]
    return np.concatenate(logits), routing


def _choices(image: dict) -> list:
    """An image's routing decisions, without the gate weights."""
    return [[layer.get(k) for k in ("experts", "token_experts", "token_kept")]
            for layer in image["layers"]]


def compare(logits: np.ndarray, baseline: np.ndarray, routing: list,
            baseline_routing: list, labels) -> dict:
    row = {"max_abs_logit_diff": float(np.abs(logits - baseline).max()),
           "mean_abs_logit_diff": float(np.abs(logits - baseline).mean()),
           "top1_agreement": float((logits.argmax(1) == baseline.argmax(1)).mean()),
           "same_routing": float(np.mean([a == b for a, b in
                                          zip(routing, baseline_routing)]))}
    if labels is not None:
        row["accuracy"] = float((logits.argmax(1) == labels).mean())
    return row


def export_variants(model: Path, work: Path) -> dict[str, Path]:
    cfg, state_dict = load_model_source(model)
    dirs = {"float32": model}
    for name in ("bfloat16", "int8"):
        dirs[name] = work / name
        export_model(cfg, state_dict, dirs[name], EXPERT_DTYPES[name])
    return dirs


def markdown(name: str, inputs: str, rows: list[dict]) -> str:
    has_accuracy = "accuracy" in rows[0]
    head = "| model | inputs | experts | compute | max abs logit diff | " \
           "mean abs logit diff | top-1 agreement | same routing |"
    lines = [head + (" accuracy |" if has_accuracy else ""),
             "| --- " * (9 if has_accuracy else 8) + "|"]
    for r in rows:
        line = (f"| {name} | {inputs} | {r['experts']} | {r['compute']} | "
                f"{r['max_abs_logit_diff']:.2e} | {r['mean_abs_logit_diff']:.2e} | "
                f"{100 * r['top1_agreement']:.1f}% | {100 * r['same_routing']:.1f}% |")
        lines.append(line + (f" {100 * r['accuracy']:.2f}% |" if has_accuracy else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine-run", required=True, help="engine_run binary")
    parser.add_argument("--model", required=True, type=Path,
                        help="a float32 model directory")
    parser.add_argument("--inputs", choices=["random", "fashion-mnist"],
                        default="random")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=16,
                        help="images per engine call (the gateway's default batch)")
    parser.add_argument("--seed", type=int, default=0, help="random inputs' seed")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    manifest = json.loads((args.model / "manifest.json").read_text())
    images, labels = make_inputs(args.inputs, args.count, manifest, args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dirs = export_variants(args.model, work)
        baseline = None
        for experts, compute in MODES:
            logits, routing = run_engine(args.engine_run, dirs[experts], compute,
                                         images, args.batch, work)
            if baseline is None:
                baseline, baseline_routing = logits, routing
            rows.append({"experts": experts, "compute": compute,
                         **compare(logits, baseline, routing, baseline_routing,
                                   labels)})
            print(f"precision_report: {experts} experts, {compute}: done",
                  file=sys.stderr)
    inputs = f"{args.count} {args.inputs}"
    print(markdown(manifest["name"], inputs, rows))
    if args.json:
        args.json.write_text(json.dumps({"model": manifest["name"], "inputs": inputs,
                                         "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
