"""What models/fashion-vmoe is: its architecture, its superclasses (one expert
per superclass) and the input normalisation the gateway applies to a 28x28
greyscale PNG. Training, statistics, heatmap and model card all read these.
"""

from __future__ import annotations

import json

import torch

from tools import fashion_mnist

MEAN, STD = 0.286, 0.353   # Fashion-MNIST training-set pixel mean / std.
ARCHITECTURE = {
    "image_size": 28, "patch_size": 7, "dim": 64, "depth": 4, "heads": 4,
    "mlp_dim": 128, "num_classes": 10, "norm_eps": 1e-6,
    "class_token": False, "global_pool": "avg",
    # k = 1 without renormalisation: the one expert's output is scaled by its
    # gate probability, so the router also learns through the task loss (with
    # renormalize the single weight would be exactly 1).
    "moe": {"layers": [2, 3], "num_experts": 4, "top_k": 1,
            "routing": "image", "renormalize": False},
}
# One expert per superclass: expert i of every MoE layer is trained to take
# SUPERCLASSES[i]. Indices into fashion_mnist.LABELS.
SUPERCLASSES = [
    {"name": "tops", "classes": [0, 2, 4, 6]},            # T-shirt/top, Pullover, Coat, Shirt
    {"name": "bottoms & dresses", "classes": [1, 3]},     # Trouser, Dress
    {"name": "footwear", "classes": [5, 7, 9]},           # Sandal, Sneaker, Ankle boot
    {"name": "bags", "classes": [8]},                     # Bag
]
NAME = "fashion-vmoe"
DESCRIPTION = (
    "Superclass-guided whole-image-routing V-MoE (Mobile V-MoE) trained on "
    "Fashion-MNIST: 28x28 greyscale clothing images, 10 classes; 4 experts in "
    "each of the last two blocks, one per superclass (tops, bottoms & dresses, "
    "footwear, bags), top-1 routing. Not for real photos. See "
    "models/fashion-vmoe/README.md.")


def dense_architecture() -> dict:
    """Same depth and width; MLPs k x mlp_dim wide: the V-MoE's FLOPs per image."""
    arch = json.loads(json.dumps(ARCHITECTURE))
    arch["mlp_dim"] = ARCHITECTURE["mlp_dim"] * ARCHITECTURE["moe"]["top_k"]
    arch["moe"] = {"layers": []}
    return arch


def superclass_of_class() -> torch.Tensor:
    table = torch.full((len(fashion_mnist.LABELS),), -1, dtype=torch.long)
    for i, group in enumerate(SUPERCLASSES):
        table[group["classes"]] = i
    assert (table >= 0).all(), "every class needs a superclass"
    return table


# Data: exactly what the gateway does with a 28x28 greyscale PNG (no resize):
# pixels / 255, replicated to 3 channels, (x - mean) / std.
def normalise(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 28, 28] -> float32 [B, 3, 28, 28] as the gateway feeds it."""
    x = images_u8.to(torch.float32) / 255.0
    return ((x - MEAN) / STD)[:, None].expand(-1, 3, -1, -1)
