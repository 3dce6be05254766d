"""Trains the default model, models/fashion-vmoe: a superclass-guided V-MoE on
Fashion-MNIST (Mobile V-MoE, Daxberger et al. 2023), and reproduces the
paper's comparison at this scale.

  /usr/bin/python3 -m tools.demo.train [--seed 0] [--out models/fashion-vmoe]

One run, deterministic for a given --seed and --threads on a given machine:

  1. trains three models on the 60,000 training images, same data order,
     each in a single-threaded process of its own, all at once (--jobs 3):
     guided  the shipped V-MoE: task loss + Mobile V-MoE's superclass loss
             (cross-entropy of every MoE layer's router logits, computed from
             the mean patch token as the routing is, against the image's
             superclass; one expert per superclass);
     plain   the same V-MoE, router trained only through the task loss;
     dense   a ViT of the same depth and width whose MLPs are k x mlp_dim
             wide, so the same FLOPs per image as the V-MoE's k experts;
  2. measures them on the 10,000 test images (accuracy, expert utilisation,
     expert choice per class);
  3. exports `guided` with tools.model.export_model, reloads the exported
     files through tools.model.vmoe_reference (the arithmetic the gateway
     implements) and measures the test accuracy again: the figure the model
     card quotes;
  4. draws models/fashion-vmoe/expert-heatmap.png with gnuplot, writes
     results.json and refreshes the generated sections of the model card
     (README.md, between `<!-- generated:NAME -->` markers; the prose around
     them is kept).

Hyper-parameters were chosen with --holdout 5000 (validation on the last
5,000 training images), never on the test set; --epochs is set by the time
budget (the whole script in under 15 minutes on 2 cores).

Speed on Debian's PyTorch (reference BLAS, a small VM): linear layers run
through oneDNN (vmoe_reference.use_onednn_linears), freed memory stays
mapped (keep_freed_memory), and trainings are processes, not threads.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tools import REPO, fashion_mnist
from tools.model.export_model import export_model
from tools.model.reference_run import load_reference
from tools.model.vmoe_reference import (ModelConfig, VisionMoE, forward_train,
                                        top_k_choices, use_onednn_linears)

# ----------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------
# Data: exactly what the gateway does with a 28x28 greyscale PNG (no resize):
# pixels / 255, replicated to 3 channels, (x - mean) / std.
# ----------------------------------------------------------------------------

def normalise(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 28, 28] -> float32 [B, 3, 28, 28] as the gateway feeds it."""
    x = images_u8.to(torch.float32) / 255.0
    return ((x - MEAN) / STD)[:, None].expand(-1, 3, -1, -1)


def augment(images_u8: torch.Tensor, generator: torch.Generator,
            pad: int, flip: bool) -> torch.Tensor:
    """Random crop of the image padded by `pad` (zeros) and random horizontal
    flip, one draw per image from `generator`."""
    batch, size = images_u8.shape[0], images_u8.shape[1]
    if pad:
        padded = F.pad(images_u8, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
        dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator)
        rows = dy[:, None] + torch.arange(size)
        cols = dx[:, None] + torch.arange(size)
        images_u8 = padded[torch.arange(batch)[:, None, None],
                           rows[:, :, None], cols[:, None, :]]
    if flip:
        flipped = torch.rand(batch, generator=generator) < 0.5
        images_u8 = torch.where(flipped[:, None, None],
                                images_u8.flip(-1), images_u8)
    return images_u8


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------

def init_weights(model: VisionMoE) -> None:
    """timm's ViT initialisation: Linear weights (routers included) truncated
    normal std 0.02, biases 0, LayerNorm (1, 0), pos_embed std 0.02; the patch
    convolution keeps PyTorch's default."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.LayerNorm):
            torch.nn.init.ones_(module.weight)
            torch.nn.init.zeros_(module.bias)
    torch.nn.init.trunc_normal_(model.pos_embed, std=0.02)


def balance_loss(router_logits: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's load-balancing loss for top-1 image routing:
    E * sum_e (share of images whose top expert is e) * (mean gate of e)."""
    gates = router_logits.softmax(dim=-1)
    num_experts = gates.shape[-1]
    top = F.one_hot(gates.argmax(dim=-1), num_experts).to(gates.dtype)
    return num_experts * (top.mean(dim=0) * gates.mean(dim=0)).sum()


def train(run: str, arch: dict, images: torch.Tensor, labels: torch.Tensor,
          args, router_loss: str) -> tuple[VisionMoE, dict]:
    """Trains one model. router_loss: "superclass" (Mobile V-MoE), "balance"
    (Switch load balancing, --plain-balance) or "none" (task loss only)."""
    config = ModelConfig.from_architecture(arch)
    torch.manual_seed(args.seed)
    model = use_onednn_linears(VisionMoE(config))
    init_weights(model)
    superclass = superclass_of_class()
    steps_per_epoch = math.ceil(len(images) / args.batch_size)
    total_steps = args.epochs * steps_per_epoch
    warmup = min(args.warmup_steps, total_steps // 4)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or name == "pos_embed" else decay).append(p)
    optimiser = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)

    def lr_at(step: int) -> float:
        if step < warmup:
            return args.lr * (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return args.lr * 0.5 * (1.0 + math.cos(math.pi * progress))

    # The same data order and augmentation draws for every run.
    generator = torch.Generator().manual_seed(args.seed + 1)
    started = time.perf_counter()
    step = 0
    model.train()
    log = []
    for epoch in range(args.epochs):
        order = torch.randperm(len(images), generator=generator)
        sums = {"loss": 0.0, "router": 0.0, "correct": 0, "seen": 0}
        for first in range(0, len(images), args.batch_size):
            index = order[first:first + args.batch_size]
            x = augment(images[index], generator, args.crop_pad, args.flip)
            y = labels[index]
            for group in optimiser.param_groups:
                group["lr"] = lr_at(step)
            logits, router_logits = forward_train(model, normalise(x))
            loss = F.cross_entropy(logits, y)
            extra = torch.zeros(())
            if router_logits and router_loss == "superclass":
                extra = args.aux_weight * torch.stack([
                    F.cross_entropy(r, superclass[y]) for r in router_logits]).mean()
            elif router_logits and router_loss == "balance":
                extra = args.balance_weight * torch.stack(
                    [balance_loss(r) for r in router_logits]).mean()
            optimiser.zero_grad(set_to_none=True)
            (loss + extra).backward()
            optimiser.step()
            step += 1
            sums["loss"] += loss.item() * len(y)
            sums["router"] += extra.item() * len(y)
            sums["correct"] += (logits.argmax(-1) == y).sum().item()
            sums["seen"] += len(y)
        entry = {"epoch": epoch + 1,
                 "task_loss": sums["loss"] / sums["seen"],
                 "router_loss": sums["router"] / sums["seen"],
                 "train_accuracy": sums["correct"] / sums["seen"],
                 "seconds": time.perf_counter() - started}
        log.append(entry)
        print(f"[{run}] epoch {epoch + 1}/{args.epochs}: task loss "
              f"{entry['task_loss']:.4f} router loss {entry['router_loss']:.4f} "
              f"train acc {entry['train_accuracy']:.4f} "
              f"({entry['seconds']:.0f} s)", flush=True)
    model.eval()
    return model, {"epochs": log, "train_seconds": time.perf_counter() - started}


# ----------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------
# Outputs: heatmap, model card
# ----------------------------------------------------------------------------

HEATMAP_SCRIPT = r"""
set terminal pngcairo size 1560,{height} font "DejaVu Sans,13" noenhanced
set output "{png}"
set multiplot layout 1,{panels} title "Expert choice per class, 10,000 Fashion-MNIST test images: share of the class's images routed to each expert" font ",15"
set palette defined (0 "#ffffff", 0.25 "#c6dbef", 0.5 "#6baed6", 0.75 "#2171b5", 1 "#08306b")
set cbrange [0:1]
set xrange [-0.5:{cols_max}]
set yrange [{rows_max}:-0.5]
set ytics ({ytics}) font ",12"
set tics scale 0
unset key
set lmargin 24
set bmargin 8
set tmargin 5
{panels_body}
unset multiplot
"""

PANEL = r"""
set title "{title}" font ",14"
set xtics ({xtics}) rotate by 35 right font ",11"
{colorbox}
unset arrow
{lines}
plot "{data}" matrix with image, \
     "{data}" matrix using 1:2:(sprintf("%.2f", $3)):($3 >= 0.55 ? 0xffffff : 0x000000) \
       with labels textcolor rgb variable font ",10"
"""


def heatmap_rows() -> list[int]:
    """Classes grouped by superclass (the guided router's target blocks)."""
    return [c for group in SUPERCLASSES for c in group["classes"]]


def draw_heatmap(panels: list[tuple[str, np.ndarray, bool]], png: Path,
                 work: Path) -> None:
    """panels: (title, counts [layers, classes, E], experts named after
    superclasses). One panel per model; rows = classes grouped by
    superclass, columns = (MoE block, expert), cell = share of the class's
    images routed to that expert in that block."""
    layers = ARCHITECTURE["moe"]["layers"]
    experts = ARCHITECTURE["moe"]["num_experts"]
    cols = len(layers) * experts
    rows = heatmap_rows()
    sizes = [len(g["classes"]) for g in SUPERCLASSES]
    ytics = ", ".join(
        f'"{fashion_mnist.LABELS[c]} ({SUPERCLASSES[i]["name"]})" {r}'
        for r, (i, c) in enumerate((i, c) for i, g in enumerate(SUPERCLASSES)
                                   for c in g["classes"]))
    bodies = []
    for p, (title, counts, named) in enumerate(panels):
        per_class = counts.sum(axis=2, keepdims=True) / ARCHITECTURE["moe"]["top_k"]
        shares = counts / per_class                          # [layers, C, E]
        matrix = np.concatenate(list(shares), axis=1)[rows]  # [C, layers * E]
        data = work / f"heatmap{p}.dat"
        np.savetxt(data, matrix, fmt="%.4f")
        xtics = ", ".join(
            f'"block {layer} e{e}' + (f' ({SUPERCLASSES[e]["name"]})' if named else "")
            + f'" {i * experts + e}'
            for i, layer in enumerate(layers) for e in range(experts))
        arrows = [f"from {i * experts - 0.5},-0.5 to {i * experts - 0.5},"
                  f"{len(rows) - 0.5} nohead lw 3"
                  for i in range(1, len(layers))]
        arrows += [f"from -0.5,{b - 0.5} to {cols - 0.5},{b - 0.5} nohead lw 1 dt 2"
                   for b in np.cumsum(sizes)[:-1]]
        lines = "\n".join(f"set arrow {n + 1} {a} lc rgb '#000000' front"
                          for n, a in enumerate(arrows))
        bodies.append(PANEL.format(
            title=title, data=data, xtics=xtics, lines=lines,
            colorbox="set colorbox" if p == len(panels) - 1 else "unset colorbox"))
    script = HEATMAP_SCRIPT.format(
        height=760, png=png, panels=len(panels), cols_max=cols - 0.5,
        rows_max=len(rows) - 0.5, ytics=ytics, panels_body="\n".join(bodies))
    (work / "heatmap.gp").write_text(script)
    subprocess.run(["gnuplot", str(work / "heatmap.gp")], check=True)


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def generated_sections(results: dict) -> dict[str, str]:
    """Markdown for each `<!-- generated:NAME -->` block of the model card."""
    arch = ARCHITECTURE
    moe = arch["moe"]
    runs = results["runs"]
    g, p, d = runs["guided"], runs["plain"], runs["dense"]
    sections = {}

    sections["config"] = "\n".join([
        "| field | value |", "| --- | --- |",
        f"| input | {arch['image_size']}x{arch['image_size']}, greyscale "
        f"replicated to 3 channels, mean {MEAN} / std {STD} per channel |",
        f"| patches | {arch['patch_size']}x{arch['patch_size']} -> "
        f"N = {(arch['image_size'] // arch['patch_size']) ** 2} tokens, no class "
        f"token, average pooling |",
        f"| width D / depth L / heads H | {arch['dim']} / {arch['depth']} / {arch['heads']} |",
        f"| MLP / expert hidden width F | {arch['mlp_dim']} |",
        f"| MoE blocks (0-based) | {', '.join(map(str, moe['layers']))} (the last two) |",
        f"| experts E / top-k | {moe['num_experts']} / {moe['top_k']}, whole-image "
        f"routing, renormalize {str(moe['renormalize']).lower()} (the expert's "
        f"output is scaled by its gate probability) |",
        f"| classes | {arch['num_classes']} (tools/fashion_mnist.LABELS) |",
        "| superclasses (expert i of each MoE block) | " + "; ".join(
            f"{i}: {s['name']} ({', '.join(fashion_mnist.LABELS[c] for c in s['classes'])})"
            for i, s in enumerate(SUPERCLASSES)) + " |",
        f"| parameters | {results['parameters']['guided']:,} "
        f"({results['parameters']['guided_per_image']:,} used per image); dense "
        f"baseline {results['parameters']['dense']:,} |",
        f"| files | {results['model_bytes']:,} bytes "
        f"({results['model_bytes'] / 2**20:.2f} MiB) in float32 |",
    ])

    t = results["training"]
    sections["training"] = "\n".join([
        "```",
        f"/usr/bin/python3 -m tools.demo.train --seed {t['seed']}",
        "```",
        "",
        f"AdamW (lr {t['lr']}, weight decay {t['weight_decay']} on matrices, "
        f"{t['warmup_steps']} warm-up steps then cosine decay to 0), batch "
        f"{t['batch_size']}, {t['epochs']} epochs over the 60,000 training "
        f"images, augmentation: "
        + (", ".join(filter(None, [
            f"random crop of the image zero-padded by {t['crop_pad']} px"
            if t['crop_pad'] else "", "random horizontal flip" if t['flip'] else ""]))
           or "none")
        + f". Superclass loss: cross-entropy of each MoE block's router logits "
        f"(from the mean patch token, as the routing) against the image's "
        f"superclass, weight {t['aux_weight']} on the mean over the MoE blocks. "
        f"torch {t['torch']}; {t['jobs']} trainings at a time, each its own "
        f"process with {t['threads']} PyTorch thread(s). The whole script (three "
        f"trainings, evaluation, export, reload, heatmap, this card) took "
        f"**{results['wall_seconds'] / 60:.1f} min** on {t['machine']}; "
        f"training: guided {g['train_seconds']:.0f} s, plain "
        f"{p['train_seconds']:.0f} s, dense {d['train_seconds']:.0f} s.",
    ])

    ref = results["exported"]
    sections["accuracy"] = "\n".join([
        f"**Test accuracy: {pct(ref['accuracy'])}** ({ref['correct']:,} / "
        f"{ref['images']:,} Fashion-MNIST test images), measured by PyTorch on "
        f"the exported files reloaded through `tools/model/vmoe_reference.py` "
        f"(`{ref['near_tie_routing_decisions']}` routing decisions were near "
        f"ties, gates within 1e-4). The gateway gives the same answers: "
        f"`tests/models` (CTest `models.fashion_vmoe_gateway_accuracy`) sends "
        f"all 10,000 images as PNG files and as tensors and requires both "
        f"accuracies within 0.1 points of this figure.",
        "",
        "Expert utilisation of the shipped model (share of the test images' "
        "routing slots per expert):",
        "",
        utilisation_table({"shipped (guided)": g}),
    ])

    rows = [
        "| model | router training | test accuracy | expert utilisation "
        "(block " + ", block ".join(map(str, moe["layers"])) + "; overall) | "
        "images routed to their superclass's expert (per block) |",
        "| --- | --- | --- | --- | --- |",
        f"| dense ViT, MLP width k x F = {arch['mlp_dim'] * moe['top_k']} | - | "
        f"{pct(d['accuracy'])} | - | - |",
    ]
    for name, run, how in (("V-MoE, plain routing", p, results["plain_router_training"]),
                           ("V-MoE, superclass-guided (shipped)", g,
                            f"task loss + superclass loss ({results['training']['aux_weight']})")):
        rows.append(
            f"| {name} | {how} | {pct(run['accuracy'])} | "
            + " / ".join(pct(u) for u in run["utilisation_per_layer"])
            + f"; **{pct(run['utilisation'])}** | "
            + " / ".join(pct(a) for a in run["superclass_agreement"]) + " |")
    claims = results["claims"]
    sections["comparison"] = "\n".join(rows + [
        "",
        "Per-expert shares of the routing slots (test set; the guided model's "
        "expert i is trained for superclass i: e0 tops, e1 bottoms & dresses, "
        "e2 footwear, e3 bags; the plain model's experts have no assigned "
        "meaning):",
        "",
        utilisation_table({"plain": p, "guided": g}),
        "",
        "Paper claims at this scale. One run each, same seed and data order; "
        "a difference counts if it exceeds two standard errors of the paired "
        "difference on the 10,000 test images (from the images on which the "
        "two models disagree). Seed-to-seed variation is not measured.",
        "",
        f"- V-MoE beats the dense ViT of equal per-image FLOPs: "
        f"{pct(g['accuracy'])} vs {pct(d['accuracy'])}, "
        f"{diff_text(results['comparisons']['guided_vs_dense'])}: "
        f"**{claims['moe_beats_dense']}**.",
        f"- Superclass-guided routing beats plain routing in accuracy: "
        f"{pct(g['accuracy'])} vs {pct(p['accuracy'])}, "
        f"{diff_text(results['comparisons']['guided_vs_plain'])}: "
        f"**{claims['guided_beats_plain']}**.",
        f"- Superclass-guided routing uses more of the experts (paper: 47% -> "
        f"82%): {pct(p['utilisation'])} -> {pct(g['utilisation'])}: "
        f"**{claims['guided_uses_more_experts']}**.",
    ])
    return sections


def diff_text(comparison: dict) -> str:
    return (f"{100 * comparison['difference']:+.2f} points (standard error "
            f"{100 * comparison['standard_error']:.2f}; "
            f"{comparison['only_a_correct']} images only the first gets right, "
            f"{comparison['only_b_correct']} only the second)")


def utilisation_table(runs: dict) -> str:
    moe = ARCHITECTURE["moe"]
    header = "| model | block | " + " | ".join(
        f"e{e}" for e in range(moe["num_experts"])) + \
        " | experts counted (>= 1/(4E) = 6.25%) | effective experts exp(H) |"
    lines = [header, "|" + " --- |" * (moe["num_experts"] + 4)]
    for name, run in runs.items():
        for i, layer in enumerate(moe["layers"]):
            shares = run["expert_shares"][i]
            lines.append(
                f"| {name} | {layer} | " + " | ".join(pct(s) for s in shares)
                + f" | {round(run['utilisation_per_layer'][i] * moe['num_experts'])}"
                f" / {moe['num_experts']} | "
                f"{run['effective_experts_per_layer'][i]:.2f} |")
    return "\n".join(lines)


CARD_SKELETON = """# fashion-vmoe

<!-- generated:config -->
<!-- end:config -->

<!-- generated:training -->
<!-- end:training -->

<!-- generated:accuracy -->
<!-- end:accuracy -->

<!-- generated:comparison -->
<!-- end:comparison -->
"""


def write_card(path: Path, sections: dict[str, str]) -> None:
    """Replaces the body of every `<!-- generated:NAME -->` ... `<!-- end:NAME
    -->` block; the prose around the blocks is kept."""
    text = path.read_text() if path.exists() else CARD_SKELETON
    for name, body in sections.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- end:{name} -->)",
                             re.S)
        if not pattern.search(text):
            raise SystemExit(f"{path}: no <!-- generated:{name} --> block")
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    path.write_text(text)


# ----------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------

def export_into(out: Path, state_dict: dict, accuracy: float) -> dict:
    """Exports into `out`, replacing the weights of an earlier export but
    keeping the card and anything else that is not the exporter's."""
    description = DESCRIPTION.replace(
        "Not for real photos.",
        f"Test accuracy {100 * accuracy:.2f}% (10,000 test images). Not for real photos.")
    cfg = {"name": NAME, "description": description, "architecture": ARCHITECTURE,
           "preprocessing": {"mean": [MEAN] * 3, "std": [STD] * 3},
           "labels": fashion_mnist.LABELS, "superclasses": SUPERCLASSES}
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out.parent))
    try:
        manifest = export_model(cfg, state_dict, staging / "model")
        for name in ("manifest.json", "model.safetensors", "experts"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(str(staging / "model" / name), str(target))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "models" / NAME)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--aux-weight", type=float, default=0.5,
                        help="weight of the superclass router loss")
    parser.add_argument("--plain-balance", type=float, default=0.0,
                        help="if > 0, the plain run adds Switch load balancing "
                        "with this weight (default: task loss only)")
    # No augmentation by default: in this budget the models underfit
    # (training accuracy stays below held-out accuracy).
    parser.add_argument("--crop-pad", type=int, default=0,
                        help="augmentation: random crop of the image "
                        "zero-padded by this many pixels")
    parser.add_argument("--flip", action="store_true",
                        help="augmentation: random horizontal flip")
    parser.add_argument("--jobs", type=int, default=3,
                        help="trainings run at once, one process each")
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch threads per training process")
    parser.add_argument("--holdout", type=int, default=0,
                        help="tuning: train on all but the last N training "
                        "images and report accuracy on those; nothing is written")
    parser.add_argument("--limit", type=int, default=0,
                        help="smoke test: train on the first N images only "
                        "(use with --out elsewhere)")
    parser.add_argument("--runs", default="guided,plain,dense",
                        help="tuning: which runs (comma-separated)")
    args = parser.parse_args(argv)
    args.balance_weight = args.plain_balance
    return args


def keep_freed_memory() -> None:
    """Stops glibc from returning freed tensor memory to the kernel (large
    blocks are mmap-ed and unmapped on free by default): every new
    activation tensor would then page-fault afresh, which costs more than
    the arithmetic in a small VM. Linux + glibc only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)


def setup_torch(threads: int) -> None:
    keep_freed_memory()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.use_deterministic_algorithms(True)


def load_data(args):
    """(train images, train labels, test images, test labels) as tensors;
    with --holdout the "test" images are the held-out training images."""
    def tensors(split):
        images, labels = fashion_mnist.load(split)
        return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
    train_u8, train_y = tensors("train")
    test_u8, test_y = tensors("test")
    if args.limit:
        train_u8, train_y = train_u8[:args.limit], train_y[:args.limit]
    if args.holdout:
        test_u8, test_y = train_u8[-args.holdout:], train_y[-args.holdout:]
        train_u8, train_y = train_u8[:-args.holdout], train_y[:-args.holdout]
    return train_u8, train_y, test_u8, test_y


def plan(args) -> dict:
    """run name -> (architecture, router loss)."""
    return {"guided": (ARCHITECTURE, "superclass"),
            "plain": (ARCHITECTURE, "balance" if args.plain_balance > 0 else "none"),
            "dense": (dense_architecture(), "none")}


def run_training(job) -> tuple:
    """One training and its test evaluation; a process of its own with
    --jobs > 1. Returns (run, state_dict, results)."""
    run, args = job
    setup_torch(args.threads)
    train_u8, train_y, test_u8, test_y = load_data(args)
    arch, router_loss = plan(args)[run]
    model, log = train(run, arch, train_u8, train_y, args, router_loss)
    result = {**log, **evaluate(model, test_u8, test_y)}
    summary = {k: v for k, v in result.items()
               if k in ("accuracy", "utilisation_per_layer", "utilisation",
                        "expert_shares", "superclass_agreement")}
    print(f"[{run}] {'held-out' if args.holdout else 'test'}: {summary}",
          flush=True)
    return run, {k: v.detach().clone() for k, v in model.state_dict().items()}, result


def main(argv=None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    setup_torch(args.threads)
    if args.holdout:
        print(f"tuning: {60000 - args.holdout} training images, "
              f"{args.holdout} held out")
    jobs = [(run, args) for run in args.runs.split(",")]
    if args.jobs > 1 and len(jobs) > 1:
        # Separate single-threaded processes rather than more threads per
        # training: they keep both cores busy whatever else runs, while one
        # training with two OpenMP threads slowed down up to 8x as soon as
        # another process took one of the cores (its threads wait for each
        # other at every operation).
        context = multiprocessing.get_context("spawn")
        with context.Pool(min(args.jobs, len(jobs))) as pool:
            outputs = pool.map(run_training, jobs, chunksize=1)
    else:
        outputs = [run_training(job) for job in jobs]
    runs, models = {}, {}
    for run, state_dict, result in outputs:
        runs[run] = result
        models[run] = VisionMoE(ModelConfig.from_architecture(plan(args)[run][0]))
        models[run].load_state_dict(state_dict)
        models[run].eval()
    if args.holdout or set(runs) != set(plan(args)):
        print(f"tuning run done in {time.perf_counter() - started:.0f} s; "
              "nothing written")
        return 0
    plain_loss = plan(args)["plain"][1]
    _, _, test_u8, test_y = load_data(args)

    out = args.out
    manifest = export_into(out, models["guided"].state_dict(),
                           runs["guided"]["accuracy"])
    model_bytes = sum(f["size_bytes"] for f in manifest["files"])
    exported = reference_accuracy(out, test_u8, test_y)
    print(f"exported {out} ({model_bytes} bytes); reference accuracy on the "
          f"reloaded files: {exported['accuracy']:.4f}", flush=True)
    if abs(exported["accuracy"] - runs["guided"]["accuracy"]) > 0.001:
        raise SystemExit("the exported model's accuracy differs from the "
                         "trained model's: export or reload is broken")

    with tempfile.TemporaryDirectory() as work:
        draw_heatmap([("superclass-guided routing (shipped model)",
                       np.array(runs["guided"]["routing_counts"]), True),
                      ("plain routing (task loss only)" if plain_loss == "none"
                       else "plain routing (+ load balancing)",
                       np.array(runs["plain"]["routing_counts"]), False)],
                     out / "expert-heatmap.png", Path(work))

    def params(model, per_image=False):
        total = sum(p.numel() for p in model.parameters())
        if per_image:
            moe = model.config.moe
            expert = sum(p.numel() for p in models["guided"].blocks[moe.layers[0]]
                         .moe.experts[0].parameters())
            total -= len(moe.layers) * (moe.num_experts - moe.top_k) * expert
        return total

    g, p, d = runs["guided"], runs["plain"], runs["dense"]
    guided_vs_plain = paired_difference(g["correct_images"], p.pop("correct_images"))
    results = {
        "name": NAME, "architecture": ARCHITECTURE, "superclasses": SUPERCLASSES,
        "dense_architecture": dense_architecture(),
        "training": {"seed": args.seed, "epochs": args.epochs,
                     "batch_size": args.batch_size, "lr": args.lr,
                     "weight_decay": args.weight_decay,
                     "warmup_steps": args.warmup_steps,
                     "aux_weight": args.aux_weight,
                     "plain_balance_weight": args.plain_balance,
                     "crop_pad": args.crop_pad, "flip": args.flip,
                     "threads": args.threads, "jobs": args.jobs,
                     "torch": torch.__version__,
                     "machine": f"{os.cpu_count()} cores, {platform.machine()}"},
        "plain_router_training": ("task loss only" if plain_loss == "none" else
                                  f"task loss + Switch load balancing ({args.plain_balance})"),
        "parameters": {"guided": params(models["guided"]),
                       "guided_per_image": params(models["guided"], True),
                       "dense": params(models["dense"])},
        "model_bytes": model_bytes,
        "exported": exported,
        "runs": runs,
        "comparisons": {
            "guided_vs_dense": paired_difference(g.pop("correct_images"),
                                                 d.pop("correct_images")),
        },
    }
    results["comparisons"]["guided_vs_plain"] = guided_vs_plain
    comparisons = results["comparisons"]
    results["claims"] = {
        "moe_beats_dense": verdict(**{k: comparisons["guided_vs_dense"][k]
                                      for k in ("difference", "standard_error")}),
        "guided_beats_plain": verdict(**{k: guided_vs_plain[k]
                                         for k in ("difference", "standard_error")}),
        "guided_uses_more_experts": "reproduced"
        if g["utilisation"] > p["utilisation"] else
        "not reproduced (equal)" if g["utilisation"] == p["utilisation"]
        else "not reproduced (reversed)"}
    results["wall_seconds"] = time.perf_counter() - started
    write_card(out / "README.md", generated_sections(results))
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({"test_accuracy": {k: v["accuracy"] for k, v in runs.items()},
                      "exported_reference_accuracy": exported["accuracy"],
                      "utilisation": {k: runs[k]["utilisation"] for k in ("guided", "plain")},
                      "claims": results["claims"], "model_bytes": model_bytes,
                      "wall_seconds": round(results["wall_seconds"], 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
