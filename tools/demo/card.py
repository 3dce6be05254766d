"""The model card, models/fashion-vmoe/README.md: the Markdown of each
`<!-- generated:NAME -->` block, from the training's results, written
between its markers (the prose around the blocks is kept)."""

from __future__ import annotations

import re
from pathlib import Path

from tools import fashion_mnist
from tools.demo.fashion_vmoe import ARCHITECTURE, MEAN, STD, SUPERCLASSES


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def generated_sections(results: dict) -> dict[str, str]:
    """Markdown for each `<!-- generated:NAME -->` block of the model card."""
    return {"config": config_section(results),
            "training": training_section(results),
            "accuracy": accuracy_section(results),
            "comparison": comparison_section(results)}


def config_section(results: dict) -> str:
    """The architecture, superclasses, parameters and file size."""
    arch = ARCHITECTURE
    moe = arch["moe"]
    return "\n".join([
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


def training_section(results: dict) -> str:
    """The command, the hyper-parameters and how long it all took."""
    t = results["training"]
    g, p, d = (results["runs"][r] for r in ("guided", "plain", "dense"))
    return "\n".join([
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


def accuracy_section(results: dict) -> str:
    """The exported model's test accuracy and expert utilisation."""
    ref = results["exported"]
    return "\n".join([
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
        utilisation_table({"shipped (guided)": results["runs"]["guided"]}),
    ])


def comparison_section(results: dict) -> str:
    """Dense vs plain vs guided, and the verdict on each of the paper's
    claims."""
    arch = ARCHITECTURE
    moe = arch["moe"]
    g, p, d = (results["runs"][r] for r in ("guided", "plain", "dense"))
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
    return "\n".join(rows + [
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
