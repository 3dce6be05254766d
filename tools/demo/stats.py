"""The demo training's measurements: test accuracy and expert choice per
class, expert utilisation, paired accuracy differences between two models
and the verdict on each of the paper's claims, parameter counts, and the
accuracy of the exported files reloaded through the reference.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tools.demo.fashion_vmoe import SUPERCLASSES, normalise
from tools.model.reference_run import load_reference
from tools.model.vmoe_reference import VisionMoE, forward_train, top_k_choices


@torch.no_grad()
def evaluate(model: VisionMoE, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1000) -> dict:
    """Accuracy, and per MoE layer the routing slots per (class, expert)."""
    config = model.config
    moe = config.moe
    num_classes = config.num_classes
    counts = np.zeros((len(moe.layers), num_classes, max(moe.num_experts, 1)),
                      np.int64)
    predictions = []
    for first in range(0, len(images), batch_size):
        x = normalise(images[first:first + batch_size])
        y = labels[first:first + batch_size].numpy()
        logits, router_logits = forward_train(model, x)
        predictions.append(logits.argmax(-1))
        for layer, r in enumerate(router_logits):
            _, experts, _ = top_k_choices(r.softmax(-1), moe.top_k)
            for j in range(moe.top_k):
                np.add.at(counts[layer], (y, experts[:, j].numpy()), 1)
    correct = (torch.cat(predictions) == labels).numpy()
    result = {"accuracy": float(correct.mean()), "correct_images": correct}
    if moe.layers:
        result["routing_counts"] = counts.tolist()
        result.update(utilisation(counts))
        result["superclass_agreement"] = superclass_agreement(counts, moe.top_k)
    return result


def paired_difference(correct_a: np.ndarray, correct_b: np.ndarray) -> dict:
    """Accuracy difference a - b on the same test images, with its standard
    error from the images the two models disagree on (paired, as McNemar's
    test): SE = sqrt(b + c - (b - c)^2 / n) / n, b and c the two kinds of
    disagreement."""
    n = len(correct_a)
    only_a = int((correct_a & ~correct_b).sum())
    only_b = int((~correct_a & correct_b).sum())
    se = math.sqrt(max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0)) / n
    return {"difference": (only_a - only_b) / n, "standard_error": se,
            "only_a_correct": only_a, "only_b_correct": only_b}


def verdict(difference: float, standard_error: float) -> str:
    """A claim that A beats B: reproduced if the difference is over two
    standard errors, reversed if under minus two, else not significant."""
    if difference > 2 * standard_error:
        return "reproduced"
    if difference < -2 * standard_error:
        return "not reproduced (reversed)"
    return "not reproduced (difference not significant)"


def utilisation(counts: np.ndarray) -> dict:
    """Expert utilisation on the test set. An expert of a layer *counts* if it
    receives at least 1/(4E) of that layer's routing slots (k per image): a
    quarter of its fair share. (Half the fair share, 1/(2E) = 12.5% here, would
    fail even perfect superclass routing: Bag is 10% of the images.)"""
    per_expert = counts.sum(axis=1)                          # [layers, E]
    shares = per_expert / per_expert.sum(axis=1, keepdims=True)
    num_experts = counts.shape[2]
    used = shares >= 1.0 / (4 * num_experts)
    entropy = -(np.where(shares > 0, shares * np.log(np.maximum(shares, 1e-30)),
                         0.0)).sum(axis=1)
    return {"expert_shares": shares.round(4).tolist(),
            "utilisation_per_layer": used.mean(axis=1).tolist(),
            "utilisation": float(used.mean()),
            # exp(entropy of the shares) / E: 1 for a perfectly even split.
            "effective_experts_per_layer": np.exp(entropy).round(3).tolist()}


def superclass_agreement(counts: np.ndarray, top_k: int) -> list[float]:
    """Per layer: share of images whose top-k experts include their
    superclass's expert (expert i = SUPERCLASSES[i])."""
    agreement = []
    for layer_counts in counts:
        hits = sum(layer_counts[c, i] for i, group in enumerate(SUPERCLASSES)
                   for c in group["classes"] if i < layer_counts.shape[1])
        agreement.append(float(hits / (layer_counts.sum() / top_k)))
    return agreement


def compare_runs(runs: dict) -> tuple[dict, dict]:
    """(paired differences, verdicts on the paper's three claims) of the
    "guided", "plain" and "dense" runs. Takes each run's per-image
    "correct_images" out of `runs`: results.json does not keep them."""
    correct = {name: run.pop("correct_images") for name, run in runs.items()}
    comparisons = {
        "guided_vs_dense": paired_difference(correct["guided"], correct["dense"]),
        "guided_vs_plain": paired_difference(correct["guided"], correct["plain"]),
    }
    guided, plain = runs["guided"]["utilisation"], runs["plain"]["utilisation"]
    claims = {
        "moe_beats_dense": verdict(**{k: comparisons["guided_vs_dense"][k]
                                      for k in ("difference", "standard_error")}),
        "guided_beats_plain": verdict(**{k: comparisons["guided_vs_plain"][k]
                                         for k in ("difference", "standard_error")}),
        "guided_uses_more_experts": "reproduced" if guided > plain else
        "not reproduced (equal)" if guided == plain
        else "not reproduced (reversed)"}
    return comparisons, claims


def parameter_counts(guided: VisionMoE, dense: VisionMoE) -> dict:
    """Parameters of the two models; "guided_per_image" leaves out the
    experts an image does not use (E - k per MoE layer)."""
    moe = guided.config.moe
    expert = sum(p.numel() for p in
                 guided.blocks[moe.layers[0]].moe.experts[0].parameters())

    def total(model):
        return sum(p.numel() for p in model.parameters())

    return {"guided": total(guided),
            "guided_per_image": total(guided) - len(moe.layers)
            * (moe.num_experts - moe.top_k) * expert,
            "dense": total(dense)}


@torch.no_grad()
def reference_accuracy(model_dir: Path, images: torch.Tensor,
                       labels: torch.Tensor, batch_size: int = 500) -> dict:
    """Test accuracy of an exported model directory, its files reloaded
    through tools/model/vmoe_reference.py's forward() (per-image routing:
    docs/model-spec.md's arithmetic as written, which the gateway's engine
    matches)."""
    model = load_reference(model_dir)
    correct, near_ties = 0, 0
    for first in range(0, len(images), batch_size):
        logits, routing = model(normalise(images[first:first + batch_size]))
        correct += (logits.argmax(-1) == labels[first:first + batch_size]).sum().item()
        near_ties += sum(int(r.near_tie.sum()) for r in routing)
    return {"accuracy": correct / len(images), "correct": correct,
            "images": len(images), "near_tie_routing_decisions": near_ties}
