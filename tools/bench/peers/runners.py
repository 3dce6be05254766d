"""One function per runtime of tools/bench/benchmark_peers.py, each running its tool
as a subprocess (one at a time: the caller never overlaps two) and returning
its JSON report.

Every report has the shape ort_bench.js prints:
  {"runtime", "threads", "verify": {"max_abs_diff", ...},
   "results": [{"batch", "batches", "images_per_s", "ms_per_batch_mean",
                "ms_per_batch_p50", "ms_per_batch_p99"}]}
plus "load_average": the 1-minute load average when the run started, a
hint of how busy the machine was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PYTHON = "/usr/bin/python3"  # Debian's python3-torch belongs to it.
# ort_bench.js, and node_modules where tools/setup.sh installs
# onnxruntime-node.
PEERS = Path(__file__).resolve().parent


class BenchmarkError(RuntimeError):
    """A tool failed or disagreed with the reference; says which and why."""


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every runner needs."""
    build: Path            # CMake build tree (engine_bench, engine_run, ...)
    node_modules: Path     # where peers/install.sh put onnxruntime-node
    threads: int           # every runtime's compute threads
    seconds: float         # measurement time per batch size
    tolerance: float = 1e-3  # max |logit - reference| (docs/model-spec.md)
    # bf16 compute rounds activations to 8 bits of mantissa, so its logits
    # are held only to this fraction of the largest |reference logit|: a
    # sanity check against a broken kernel, not the accuracy figure (that is
    # tools/model/precision_report.py's top-1 agreement on 1000 inputs).
    bf16_relative_tolerance: float = 0.05


def run_json(command: list, setup: Setup, timeout_s: float,
             env: dict | None = None):
    """Runs `command` and parses its stdout, one JSON value; an object gets
    the load average at the start."""
    full_env = {**os.environ, "OMP_NUM_THREADS": str(setup.threads),
                **(env or {})}
    load = os.getloadavg()[0]
    try:
        done = subprocess.run([str(c) for c in command], env=full_env,
                              capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raise BenchmarkError(f"{Path(command[0]).name} timed out after "
                             f"{timeout_s:.0f} s") from e
    sys.stderr.write(done.stderr)
    if done.returncode != 0 or not done.stdout.strip():
        raise BenchmarkError(
            f"{' '.join(map(str, command))} exited {done.returncode}: "
            f"{done.stderr.strip()[-2000:]}")
    report = json.loads(done.stdout)
    if isinstance(report, dict):
        report["load_average"] = load
    return report


def _timeout(setup: Setup, batches: list[int], per_batch_s: float) -> float:
    """Generous bound: warm-up + measurement per batch size, plus start-up."""
    return 120 + len(batches) * (2 * setup.seconds + per_batch_s)


def export_onnx(config: Path, model_dir: Path, onnx_dir: Path,
                verify_images: int) -> dict:
    """peers/export_onnx.py: the model directory of `config` (random
    weights, seed 1) if absent, then its ONNX export; the export is skipped
    when newer than the model and the exporter. Returns its report."""
    stamp = onnx_dir / "export.json"
    if stamp.exists() and (model_dir / "manifest.json").exists() and all(
            stamp.stat().st_mtime > s.stat().st_mtime
            for s in (model_dir / "manifest.json", PEERS / "export_onnx.py")):
        return json.loads(stamp.read_text())
    done = subprocess.run(
        [PYTHON, "-W", "ignore", "-m", "tools.bench.peers.export_onnx",
         "--model", model_dir,
         "--config", config, "--out", onnx_dir,
         "--verify_images", str(verify_images)],
        capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchmarkError(f"ONNX export of {model_dir} failed: "
                             f"{done.stderr.strip()[-2000:]}")
    stamp.write_text(done.stdout.strip().splitlines()[-1])
    return json.loads(stamp.read_text())


def verify_engine(setup: Setup, model_dir: Path, onnx_dir: Path,
                  dtype: str = "f32") -> tuple[float, float]:
    """Max |engine - reference| logit difference on the verification images,
    through engine_run, and the largest |reference logit|."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "logits.npy"
        subprocess.run([setup.build / "engine/engine_run", "--model", model_dir,
                        "--dtype", dtype,
                        "--input", onnx_dir / "verify_input.npy",
                        "--output", out], check=True,
                       stdout=subprocess.DEVNULL,
                       env={**os.environ, "OMP_NUM_THREADS": str(setup.threads)})
        logits = np.load(out)
    expected = np.load(onnx_dir / "verify_logits.npy")
    return (float(np.abs(logits - expected).max()),
            float(np.abs(expected).max()))


def run_engine(setup: Setup, model_dir: Path, onnx_dir: Path,
               batches: list[int], dtype: str = "f32") -> dict:
    """The engine with float32 ("engine") or bf16 ("engine-bf16") compute."""
    diff, scale = verify_engine(setup, model_dir, onnx_dir, dtype)
    tolerance = (setup.tolerance if dtype == "f32"
                 else setup.bf16_relative_tolerance * scale)
    name = "engine" if dtype == "f32" else f"engine-{dtype}"
    if not diff < tolerance:
        raise BenchmarkError(f"{name} logits differ from the reference by "
                             f"{diff} (tolerance {tolerance})")
    report = {"runtime": name, "threads": setup.threads,
              "verify": {"max_abs_diff": diff, "tolerance": tolerance},
              "results": []}
    for batch in batches:
        result = run_json([setup.build / "engine/engine_bench", "--model",
                           model_dir, "--batch", str(batch), "--seconds",
                           str(setup.seconds), "--dtype", dtype, "--json"],
                          setup,
                          _timeout(setup, [batch], 60))
        report.setdefault("load_average", result.pop("load_average"))
        report["results"].append(result)
    return report


def run_ort(setup: Setup, onnx_dir: Path, batches: list[int],
            profile_prefix: str = "") -> dict:
    command = ["node", PEERS / "ort_bench.js", "--model", onnx_dir,
               "--batches", ",".join(map(str, batches)),
               "--seconds", str(setup.seconds), "--threads", str(setup.threads),
               "--tolerance", str(setup.tolerance)]
    if profile_prefix:
        command += ["--profile", profile_prefix]
    return run_json(command, setup, _timeout(setup, batches, 60),
                    env={"NODE_PATH": str(setup.node_modules)})


def run_torch(setup: Setup, variants: list[str], model_dir: Path,
              onnx_dir: Path, batches: list[int]) -> list[dict]:
    """torch_bench.py's variants ("onednn", "stock"), one after the other in
    one process; a report per variant."""
    # Debian's stock torch takes ~15 s per batch of 16 vmoe-tiny-224 images
    # on this machine (reference BLAS): allow three such batches and more.
    load = os.getloadavg()[0]
    reports = run_json([PYTHON, "-m", "tools.bench.peers.torch_bench",
                        "--model", model_dir,
                        "--verify_dir", onnx_dir,
                        "--variants", ",".join(variants),
                        "--batches", ",".join(map(str, batches)),
                        "--seconds", str(setup.seconds),
                        "--threads", str(setup.threads),
                        "--tolerance", str(setup.tolerance)],
                       setup, _timeout(setup, batches, 120) * len(variants))
    for report in reports:
        report["load_average"] = load
    return reports


def run_roofline(setup: Setup, quick: bool) -> dict:
    command = [setup.build / "engine/matmul_roofline", "--json"]
    if quick:  # checks the tool, not the machine.
        command += ["--shapes", "256x256x256,784x64x256",
                    "--seconds_per_shape", "0.05"]
    return run_json(command, setup, 600)
