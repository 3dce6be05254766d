"""models/fashion-vmoe/expert-heatmap.png: expert choice per class, one panel
per model, drawn with gnuplot."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from tools import fashion_mnist
from tools.demo.fashion_vmoe import ARCHITECTURE, SUPERCLASSES

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
