"""The PyTorch reference behind engine_run's command line.

  /usr/bin/python3 -m tools.model.reference_run --model DIR --input X.npy \\
      --output Y.npy --experts E.json

Same contract as the C++ `engine_run`: reads a model directory
(docs/model-format.md) and normalised images X [B, 3, S, S] float32, writes
logits Y [B, C] float32 and the expert choices as JSON:

  {"images": [{"layers": [LAYER, ...]}, ...]}   one entry per image, one LAYER
                                                per MoE layer in layer order
  image routing: {"layer": 7, "experts": [3, 5], "weights": [0.61, 0.39]}
  token routing: {"layer": 5, "token_experts": [[e0, e1], ...],
                  "token_weights": [[w0, w1], ...],
                  "token_kept": [[true, false], ...]}   T rows of k choices

Choices are in choice order (descending gate). It lets the parity test check
its own plumbing before the C++ engine exists (test_parity.py --self-check),
and gives expected outputs for any exported model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from tools.model.model_format import float32_state_dict, load_model_dir
from tools.model.vmoe_reference import ImageRouting, ModelConfig, VisionMoE


def load_reference(model_dir: Path) -> VisionMoE:
    """The reference model holding a model directory's weights; bf16 and
    int8 experts as the float32 values they stand for."""
    manifest, tensors = load_model_dir(model_dir)
    model = VisionMoE(ModelConfig.from_architecture(manifest["architecture"]))
    dtypes = {t["name"]: t["dtype"] for t in manifest["tensors"]}
    model.load_state_dict({name: torch.from_numpy(array) for name, array
                           in float32_state_dict(tensors, dtypes).items()})
    return model.eval()


def routing_json(routing: list, batch_size: int) -> dict:
    """The reference's routing (VisionMoE.forward) in engine_run's JSON form."""
    return {"images": [{"layers": [_layer_json(layer, b) for layer in routing]}
                       for b in range(batch_size)]}


def _layer_json(layer, b: int) -> dict:
    if isinstance(layer, ImageRouting):
        return {"layer": layer.layer, "experts": layer.experts[b].tolist(),
                "weights": layer.weights[b].tolist()}
    return {"layer": layer.layer, "token_experts": layer.experts[b].tolist(),
            "token_weights": layer.weights[b].tolist(),
            "token_kept": layer.kept[b].tolist()}


def read_images(path: Path, image_size: int) -> torch.Tensor:
    """X.npy as float32 [B, 3, S, S]; ValueError saying what is wrong."""
    try:
        images = np.load(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read {path} as a .npy array: {e}") from e
    if images.ndim != 4 or images.shape[1:] != (3, image_size, image_size):
        raise ValueError(f"{path} has shape {list(images.shape)}, expected "
                         f"[B, 3, {image_size}, {image_size}]")
    return torch.from_numpy(images.astype(np.float32, copy=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--experts", required=True, type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)  # the parity tests' budget: two cores in all
    try:
        model = load_reference(args.model)
        images = read_images(args.input, model.config.image_size)
    except (OSError, ValueError) as e:
        print(f"reference_run: error: {e}", file=sys.stderr)
        return 1
    with torch.no_grad():
        logits, routing = model(images)
    np.save(args.output, logits.numpy())
    args.experts.write_text(json.dumps(routing_json(routing, len(images))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
