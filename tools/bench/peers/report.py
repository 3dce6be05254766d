"""Summary and table of tools/bench/benchmark_peers.py: ratios of the engine to each
peer and the fraction of the matmul roofline the engine reaches."""

from __future__ import annotations


def best_of_rounds(reports: list[dict]) -> dict:
    """One runtime's reports from several rounds merged: per batch size, the
    round with the highest images/s (the least disturbed one on a shared
    machine); verification: the worst difference seen."""
    merged = {**reports[0], "rounds": len(reports)}
    by_batch = {}
    for report in reports:
        for result in report["results"]:
            kept = by_batch.get(result["batch"])
            if kept is None or result["images_per_s"] > kept["images_per_s"]:
                by_batch[result["batch"]] = result
    merged["results"] = [by_batch[b] for b in sorted(by_batch)]
    merged["verify"] = max((r["verify"] for r in reports),
                           key=lambda v: v["max_abs_diff"])
    merged["load_average"] = [r.get("load_average") for r in reports]
    return merged


def _result(report: dict, batch: int) -> dict | None:
    return next((r for r in report["results"] if r["batch"] == batch), None)


def ratios(runtimes: dict, batches: list[int], ours: str = "engine") -> dict:
    """ours/peer for every peer (a runtime that is not the engine) and batch:
    throughput (> 1: the engine is faster) and mean and P50 latency (< 1:
    the engine is faster). `ours`: "engine" (f32) or "engine-bf16"."""
    engine = runtimes.get(ours)
    out = {}
    for name, report in runtimes.items():
        if name.startswith("engine") or engine is None:
            continue
        for batch in batches:
            mine, theirs = _result(engine, batch), _result(report, batch)
            if mine is None or theirs is None:
                continue
            out.setdefault(name, {})[str(batch)] = {
                "throughput": mine["images_per_s"] / theirs["images_per_s"],
                "latency_mean": mine["ms_per_batch_mean"]
                / theirs["ms_per_batch_mean"],
                "latency_p50": mine["ms_per_batch_p50"]
                / theirs["ms_per_batch_p50"]}
    return out


def roofline_fraction(runtimes: dict, batches: list[int], macs: int,
                      roofline: dict | None, ours: str = "engine",
                      dtype: str = "f32") -> dict:
    """Per batch: the engine's matmul GFLOP/s (2 * MACs per image * images/s)
    and its fraction of the best matmul rate of `dtype`."""
    engine = runtimes.get(ours)
    peak = (roofline or {}).get("best_gflops", {}).get(dtype)
    out = {}
    for batch in batches:
        result = engine and _result(engine, batch)
        if not result:
            continue
        gflops = 2 * macs * result["images_per_s"] / 1e9
        out[str(batch)] = {"engine_gflops": gflops,
                           "fraction": gflops / peak if peak else None}
    return out


def format_model(name: str, summary: dict) -> str:
    """The table of one model: a row per runtime and batch size."""
    macs = summary["macs_per_image"]["total"]
    lines = [f"\n{name}: {macs / 1e9:.3f} GMAC "
             f"({2 * macs / 1e9:.3f} GFLOP) of matmuls per image",
             f"{'runtime':<18}{'batch':>6}{'images/s':>11}{'ms mean':>10}"
             f"{'ms P50':>10}{'ms P99':>10}{'max|diff|':>11}"]
    for runtime, report in summary["runtimes"].items():
        for r in report["results"]:
            lines.append(
                f"{runtime:<18}{r['batch']:>6}{r['images_per_s']:>11.2f}"
                f"{r['ms_per_batch_mean']:>10.2f}{r['ms_per_batch_p50']:>10.2f}"
                f"{r['ms_per_batch_p99']:>10.2f}"
                f"{report['verify']['max_abs_diff']:>11.2e}")
    for ours, key in (("engine", "ratios"), ("engine-bf16", "ratios_bf16")):
        for peer, per_batch in summary.get(key, {}).items():
            text = ", ".join(
                f"b{b}: {v['throughput']:.2f}x throughput, "
                f"{v['latency_mean']:.2f}x mean latency"
                for b, v in per_batch.items())
            lines.append(f"{ours} / {peer}: {text}")
    for ours, dtype, key in (("engine", "f32", "roofline_fraction"),
                             ("engine-bf16", "bf16", "roofline_fraction_bf16")):
        for batch, v in summary.get(key, {}).items():
            fraction = (f"{100 * v['fraction']:.0f}% of the {dtype} matmul "
                        f"roofline" if v["fraction"] is not None
                        else "no roofline")
            lines.append(f"{ours} at batch {batch}: {v['engine_gflops']:.1f} "
                         f"GFLOP/s = {fraction}")
    return "\n".join(lines)


def format_roofline(roofline: dict) -> str:
    best = roofline.get("best_gflops", {})
    lines = [f"matmul roofline ({roofline['threads']} threads): "
             + ", ".join(f"best {k} {v:.1f} GFLOP/s" for k, v in best.items())]
    for r in roofline["results"]:
        if r["ok"]:
            shape = f"{r['m']}x{r['k']}x{r['n']}"
            lines.append(f"  {r['dtype']:<5} {shape:<16}{r['gflops']:9.1f} "
                         f"GFLOP/s (median run {r['median_gflops']:.1f})  "
                         f"{r['impl']}")
    return "\n".join(lines)
