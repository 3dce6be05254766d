"""Multiply-accumulates per image of a model as docs/model-spec.md defines
it, counted analytically.

Only the matrix products are counted (patch embedding, qkv, the two attention
products, proj, the MLPs or the k chosen experts, the router, the head): they
are what a matmul roofline measures, and everything else (LayerNorm, softmax,
GELU, residual adds) is under 1% of the arithmetic of these models. An
image-routed MoE layer costs k expert MLPs per image, as it computes only its
k experts. Token routing counts every kept assignment at full capacity
(k * T tokens through one expert MLP each), an upper bound.
"""

from __future__ import annotations

from tools.model.vmoe_reference import ModelConfig


def macs_per_image(config: ModelConfig) -> dict[str, int]:
    """MACs per image by part, and their "total"."""
    d, f, t = config.dim, config.mlp_dim, config.num_tokens
    p = config.patch_size
    attention = t * d * 3 * d + 2 * t * t * d + t * d * d  # qkv, qk^T, av, proj
    mlp = 2 * t * d * f                                     # fc1, fc2
    moe = config.moe
    parts = {"patch_embed": config.num_patches * 3 * p * p * d,
             "attention": config.depth * attention,
             "mlp": 0, "experts": 0, "router": 0,
             "head": d * config.num_classes}
    for i in range(config.depth):
        if i not in moe.layers:
            parts["mlp"] += mlp
        elif moe.routing == "image":
            parts["experts"] += moe.top_k * mlp
            parts["router"] += d * moe.num_experts      # on the mean token
        else:
            parts["experts"] += moe.top_k * mlp
            parts["router"] += t * d * moe.num_experts  # on every token
    parts["total"] = sum(parts.values())
    return parts
