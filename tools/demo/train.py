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

The model is defined in fashion_vmoe.py, its measurements in stats.py, the
heatmap in heatmap.py and the card in card.py; this module trains and runs
the whole job.

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
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tools import REPO, fashion_mnist
from tools.demo import card, heatmap, stats
from tools.demo.fashion_vmoe import (ARCHITECTURE, DESCRIPTION, MEAN, NAME, STD,
                                     SUPERCLASSES, dense_architecture,
                                     normalise, superclass_of_class)
from tools.model.export_model import export_model
from tools.model.vmoe_reference import (ModelConfig, VisionMoE, forward_train,
                                        use_onednn_linears)

# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------

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
    result = {**log, **stats.evaluate(model, test_u8, test_y)}
    summary = {k: v for k, v in result.items()
               if k in ("accuracy", "utilisation_per_layer", "utilisation",
                        "expert_shares", "superclass_agreement")}
    print(f"[{run}] {'held-out' if args.holdout else 'test'}: {summary}",
          flush=True)
    return run, {k: v.detach().clone() for k, v in model.state_dict().items()}, result


# ----------------------------------------------------------------------------
# The whole job: train, export, measure, draw, write the card
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


def train_all(args) -> tuple[dict, dict]:
    """Runs --runs' trainings; returns (run -> measurements, run -> model)."""
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
    return runs, models


def collect_results(args, runs: dict, models: dict, model_bytes: int,
                    exported: dict) -> dict:
    """results.json (without its wall time): the settings, the measurements
    of every run, their comparisons and the paper's claims."""
    plain_loss = plan(args)["plain"][1]
    comparisons, claims = stats.compare_runs(runs)
    return {
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
        "parameters": stats.parameter_counts(models["guided"], models["dense"]),
        "model_bytes": model_bytes,
        "exported": exported,
        "runs": runs,
        "comparisons": comparisons,
        "claims": claims,
    }


def main(argv=None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    setup_torch(args.threads)
    if args.holdout:
        print(f"tuning: {60000 - args.holdout} training images, "
              f"{args.holdout} held out")
    runs, models = train_all(args)
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
    exported = stats.reference_accuracy(out, test_u8, test_y)
    print(f"exported {out} ({model_bytes} bytes); reference accuracy on the "
          f"reloaded files: {exported['accuracy']:.4f}", flush=True)
    if abs(exported["accuracy"] - runs["guided"]["accuracy"]) > 0.001:
        raise SystemExit("the exported model's accuracy differs from the "
                         "trained model's: export or reload is broken")

    with tempfile.TemporaryDirectory() as work:
        heatmap.draw_heatmap(
            [("superclass-guided routing (shipped model)",
              np.array(runs["guided"]["routing_counts"]), True),
             ("plain routing (task loss only)" if plain_loss == "none"
              else "plain routing (+ load balancing)",
              np.array(runs["plain"]["routing_counts"]), False)],
            out / "expert-heatmap.png", Path(work))

    results = collect_results(args, runs, models, model_bytes, exported)
    results["wall_seconds"] = time.perf_counter() - started
    card.write_card(out / "README.md", card.generated_sections(results))
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({"test_accuracy": {k: v["accuracy"] for k, v in runs.items()},
                      "exported_reference_accuracy": exported["accuracy"],
                      "utilisation": {k: runs[k]["utilisation"] for k in ("guided", "plain")},
                      "claims": results["claims"], "model_bytes": model_bytes,
                      "wall_seconds": round(results["wall_seconds"], 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
