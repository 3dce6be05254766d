#!/usr/bin/python3
"""tools/bench/peers/model_flops.py against PyTorch's own FLOP counter: the matmul
FLOPs the profiler records for a forward pass (convolution, addmm, mm, bmm)
must be exactly 2 x the analytic MACs per image x the batch, for dense
models, image routing (k experts per image) and class tokens."""

import json
import unittest

import torch

from tools.bench.peers.model_flops import macs_per_image
from tools.model import CONFIGS
from tools.model.vmoe_reference import ModelConfig, VisionMoE, forward_train

MATMUL_OPS = {"aten::conv2d", "aten::addmm", "aten::mm", "aten::bmm"}


def profiled_matmul_flops(config: ModelConfig, batch: int) -> int:
    torch.manual_seed(0)
    model = VisionMoE(config).eval()
    images = torch.randn(batch, 3, config.image_size, config.image_size)
    with torch.inference_mode(), torch.profiler.profile(with_flops=True) as p:
        forward_train(model, images)   # each image runs only its k experts
    return sum(e.flops for e in p.key_averages() if e.key in MATMUL_OPS)


class ModelFlopsTest(unittest.TestCase):
    def test_matches_profiler(self):
        for name in ("tiny-image", "tiny-image-cls", "tiny-dense"):
            with self.subTest(config=name):
                arch = json.loads((CONFIGS / f"{name}.json").read_text())
                config = ModelConfig.from_architecture(arch["architecture"])
                batch = 3
                self.assertEqual(profiled_matmul_flops(config, batch),
                                 2 * batch * macs_per_image(config)["total"])

    def test_moe_counts_k_experts(self):
        arch = json.loads((CONFIGS / "vmoe-tiny-224.json")
                          .read_text())["architecture"]
        moe = macs_per_image(ModelConfig.from_architecture(arch))
        dense = macs_per_image(ModelConfig.from_architecture(
            {**arch, "moe": {"layers": []}}))
        # Three MoE layers of k = 2 experts: three extra MLPs per image.
        self.assertEqual(moe["experts"], 2 * 3 * dense["mlp"] // 12)
        self.assertEqual(moe["total"] - moe["router"] - dense["total"],
                         3 * dense["mlp"] // 12)


if __name__ == "__main__":
    unittest.main()
