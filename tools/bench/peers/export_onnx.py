"""ONNX export of a model directory, for the ONNX Runtime peer.

  /usr/bin/python3 -m tools.bench.peers.export_onnx --model DIR --out OUT_DIR \\
      [--config CFG.json] [--verify_images 4] [--seed 1]

With --config, a model directory DIR that does not exist yet is first
exported from CFG.json with random weights, as `tools.model.export_model
--random-seed 1` does (in this process, to save a second torch start-up).

Writes OUT_DIR/model.onnx (float32 images [B, 3, S, S] -> logits [B, C], B
dynamic, opset 17), and the data ort_bench.js checks ONNX Runtime with before
timing it: OUT_DIR/verify_input.npy (random normal images) and
OUT_DIR/verify_logits.npy (tools/model/vmoe_reference.py's VisionMoE on them, the
spec in executable form). Prints one JSON line: the export module's own max
|logit difference| from the reference in PyTorch.

The exported graph is VisionMoE's arithmetic with image routing written as
tensor operations, so that EACH IMAGE COMPUTES ONLY ITS k EXPERTS, as the
engine does (a dense "run every expert and mask" export would cost E/k = 4x
the expert MACs of vmoe-tiny-224 and flatter ONNX Runtime's routing):
gates -> TopK -> Gather of the k experts' stacked weights per image ->
batched MatMul [B, k, T, D] x [B, k, D, F]. Token routing (capacity, BPR)
has data-dependent shapes and is not exported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tools.model import export_model as model_exporter
from tools.model.reference_run import load_reference
from tools.model.vmoe_reference import MoeLayer, VisionMoE

# The export's own opset: 17 has LayerNormalization as one op (ONNX Runtime
# runs it as one kernel); GELU stays the Erf form, which ONNX Runtime's
# graph optimiser fuses into its Gelu kernel.
OPSET = 17


class GatheredMoe(nn.Module):
    """One image-routed MoE layer: the k chosen experts' weights are gathered
    per image and applied with a batched matmul."""

    def __init__(self, layer: MoeLayer):
        super().__init__()
        config = layer.config
        self.class_token = config.class_token
        self.top_k = config.moe.top_k
        self.renormalize = config.moe.renormalize
        self.router = layer.router
        experts = layer.experts
        # Stacked [E, in, out] so that x @ w[e] is nn.Linear's x W^T.
        self.w1 = nn.Parameter(torch.stack([e.fc1.weight.t() for e in experts]))
        self.b1 = nn.Parameter(torch.stack([e.fc1.bias for e in experts]))
        self.w2 = nn.Parameter(torch.stack([e.fc2.weight.t() for e in experts]))
        self.b2 = nn.Parameter(torch.stack([e.fc2.bias for e in experts]))

    def forward(self, h):                                       # [B, T, D]
        patches = h[:, 1:] if self.class_token else h
        gates = self.router(patches.mean(dim=1)).softmax(dim=-1)    # [B, E]
        weights, experts = gates.topk(self.top_k, dim=-1)           # [B, k]
        if self.renormalize:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        x = h.unsqueeze(1)                                        # [B, 1, T, D]
        a = x @ self.w1[experts] + self.b1[experts].unsqueeze(2)  # [B, k, T, F]
        a = nn.functional.gelu(a)
        y = a @ self.w2[experts] + self.b2[experts].unsqueeze(2)  # [B, k, T, D]
        return (y * weights[:, :, None, None]).sum(dim=1)


class ExportedVisionMoE(nn.Module):
    """VisionMoE's forward returning logits only, MoE layers as GatheredMoe;
    shares the reference model's other modules (and so its weights)."""

    def __init__(self, model: VisionMoE):
        super().__init__()
        config = model.config
        if config.moe.layers and config.moe.routing != "image":
            raise ValueError("only image routing (or dense models) export to "
                             "ONNX: token routing has data-dependent shapes")
        self.model = model
        self.moe = nn.ModuleDict({str(i): GatheredMoe(model.blocks[i].moe)
                                  for i in config.moe.layers})

    def forward(self, images):
        model, config = self.model, self.model.config
        x = model.patch_embed(images)
        if config.class_token:
            x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = x + model.pos_embed
        for i, block in enumerate(model.blocks):
            x = x + block.attn(block.norm1(x))
            h = block.norm2(x)
            x = x + (self.moe[str(i)](h) if str(i) in self.moe else block.mlp(h))
        x = model.norm(x)
        if config.global_pool == "token":
            pooled = x[:, 0]
        else:
            pooled = (x[:, 1:] if config.class_token else x).mean(dim=1)
        return model.head(pooled)


def verification_images(model: VisionMoE, count: int, seed: int):
    """`count` random normal images whose routing has no near tie (a near tie
    may legitimately flip between two float32 implementations, which would
    change the logits by far more than the tolerance), and their reference
    logits."""
    generator = torch.Generator().manual_seed(seed)
    size = model.config.image_size
    kept_images, kept_logits = [], []
    with torch.inference_mode():
        while len(kept_images) < count:
            images = torch.randn(count, 3, size, size, generator=generator)
            logits, routing = model(images)
            tie = torch.zeros(count, dtype=torch.bool)
            for layer in routing:
                tie |= layer.near_tie
            kept_images += list(images[~tie])
            kept_logits += list(logits[~tie])
    return torch.stack(kept_images[:count]), torch.stack(kept_logits[:count])


def export(model_dir: Path, out_dir: Path, count: int, seed: int) -> dict:
    model = load_reference(model_dir)
    exported = ExportedVisionMoE(model).eval()
    images, logits = verification_images(model, count, seed)
    with torch.inference_mode():
        diff = (exported(images) - logits).abs().max().item()
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / "verify_input.npy", images.numpy())
    np.save(out_dir / "verify_logits.npy", logits.numpy())
    # Traced at batch 2 so that nothing specialises on a batch of 1.
    torch.onnx.export(exported, images[:2], str(out_dir / "model.onnx"),
                      input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"},
                                    "logits": {0: "batch"}},
                      opset_version=OPSET, do_constant_folding=True)
    return {"model": str(model_dir), "onnx": str(out_dir / "model.onnx"),
            "verify_images": count, "torch_export_max_abs_diff": diff}


def export_random_model(config_file: Path, model_dir: Path, seed: int = 1):
    """tools.model.export_model --config CONFIG --random-seed SEED --out DIR."""
    cfg = model_exporter.load_config(config_file)
    state_dict = model_exporter.random_state_dict(
        model_exporter.model_config(cfg), seed)
    model_exporter.export_model(cfg, state_dict, model_dir, random_seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True,
                        help="model directory (tools.model.export_model)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--config", type=Path,
                        help="export --model from this config if it is absent")
    parser.add_argument("--verify_images", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.config and not (args.model / "manifest.json").exists():
        export_random_model(args.config, args.model)
    print(json.dumps(export(args.model, args.out, args.verify_images,
                            args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
