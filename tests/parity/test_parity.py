#!/usr/bin/python3
"""Parity of the C++ engine with the PyTorch reference (docs/model-spec.md,
"Numerics").

  ENGINE_RUN=build/engine/engine_run PYTHONPATH=. /usr/bin/python3 tests/parity/test_parity.py
  PYTHONPATH=. /usr/bin/python3 tests/parity/test_parity.py --self-check

For every tiny test config x batch {1, 4}, and vmoe-tiny-224 at batch 2: export
a random model, run `$ENGINE_RUN --model DIR --input X.npy --output Y.npy
--experts E.json` on random normal images, and check the logits (max |diff| <=
1e-3) and the expert choices against tools/model/vmoe_reference.py.

A decision the reference flags near_tie may come out differently in float32
arithmetic that rounds differently. When one does, that image is compared no
further: a flipped choice legitimately changes its later routing and logits.
Any other difference fails. --self-check makes tools.model.reference_run play the
engine, to test this file's plumbing before the C++ engine exists.

ReducedPrecisionParityTest runs bf16/int8 experts and bf16 compute against
the reference of the same model directory (dequantised experts), with the
tolerances of REDUCED_TOLERANCE on images routed as the reference routes.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

from tools.model import CONFIGS
from tools.model.export_model import (export_model, load_config, model_config,
                                      random_state_dict)
from tools.model.reference_run import load_reference, routing_json
from tools.model.vmoe_reference import VisionMoE

TINY_CONFIGS = ("tiny-image", "tiny-image-cls", "tiny-token",
                "tiny-token-cls-nobpr", "tiny-dense", "tiny-s32")
MODEL_SEED = 1
LOGIT_TOLERANCE = 1e-3     # docs/model-spec.md's float32 bound.
WEIGHT_TOLERANCE = 1e-4    # gate weights; the near-tie margin of vmoe_reference.
MAX_NEAR_TIE_FRACTION = 0.02  # skipping more would hollow out the test.
ENGINE_TIMEOUT_S = 300

# Set by --self-check: run tools.model.reference_run instead of $ENGINE_RUN.
SELF_CHECK = False


def engine_command() -> list[str] | None:
    if SELF_CHECK:
        return [sys.executable, "-m", "tools.model.reference_run"]
    engine = os.environ.get("ENGINE_RUN")
    return [engine] if engine else None


def near_tie_flags(routing: list, batch_size: int) -> list[list]:
    """Per image, per MoE layer: the reference's near_tie flag (image routing)
    or list of flags, one per token (token routing)."""
    return [[layer.near_tie[b].tolist() for layer in routing]
            for b in range(batch_size)]


# ----------------------------------------------------------------------------
# Comparison of one image's routing
# ----------------------------------------------------------------------------

def _decisions(layer: dict) -> list:
    """A layer's decisions: one for image routing, one per token otherwise."""
    if "experts" in layer:
        return [layer["experts"]]
    return list(zip(layer["token_experts"], layer["token_kept"]))


def _weights(layer: dict) -> np.ndarray:
    return np.asarray(layer["weights"] if "weights" in layer
                      else layer["token_weights"], np.float64)


def _check_layer_structure(ref: dict, eng: dict) -> None:
    """Same fields, same layer index and same array shapes as the reference."""
    if set(eng) != set(ref) or eng["layer"] != ref["layer"]:
        raise AssertionError(f"engine layer object with fields {sorted(eng)} for "
                             f"layer {eng.get('layer')}; expected {sorted(ref)} "
                             f"for layer {ref['layer']}")
    for key in set(ref) - {"layer"}:
        if np.shape(eng[key]) != np.shape(ref[key]):
            raise AssertionError(f"layer {ref['layer']}: {key} has shape "
                                 f"{np.shape(eng[key])}, expected {np.shape(ref[key])}")


def compare_image_routing(ref_layers: list, eng_layers: list, ties: list) -> bool:
    """Checks one image's MoE layers in order.

    Returns True if every decision matches (and gate weights agree within
    WEIGHT_TOLERANCE), False as soon as a near-tie decision differs (the image
    has diverged legitimately). Raises AssertionError on any other difference.
    """
    if len(eng_layers) != len(ref_layers):
        raise AssertionError(f"engine reports {len(eng_layers)} MoE layers, "
                             f"expected {len(ref_layers)}")
    for ref, eng, tie in zip(ref_layers, eng_layers, ties):
        _check_layer_structure(ref, eng)
        tie_flags = tie if isinstance(tie, list) else [tie]
        ref_decisions, eng_decisions = _decisions(ref), _decisions(eng)
        differing = [i for i, (r, e) in enumerate(zip(ref_decisions, eng_decisions))
                     if r != e]
        if any(tie_flags[i] for i in differing):
            return False
        if differing:
            i = differing[0]
            where = (f"token {i} (experts, kept)" if "token_experts" in ref
                     else "experts")
            raise AssertionError(
                f"layer {ref['layer']}: {len(differing)} routing decision(s) "
                f"differ; {where}: reference {ref_decisions[i]}, "
                f"engine {eng_decisions[i]}")
        weight_error = np.abs(_weights(ref) - _weights(eng)).max()
        if weight_error > WEIGHT_TOLERANCE:
            raise AssertionError(f"layer {ref['layer']}: gate weights differ by "
                                 f"{weight_error:.2e} > {WEIGHT_TOLERANCE}")
    return True


# ----------------------------------------------------------------------------
# One parity case
# ----------------------------------------------------------------------------

def run_engine(command: list[str], model_dir: Path, images: np.ndarray,
               work: Path) -> tuple[np.ndarray, dict]:
    """Runs the engine on `images`; returns (logits, experts JSON)."""
    np.save(work / "X.npy", images)
    args = ["--model", str(model_dir), "--input", str(work / "X.npy"),
            "--output", str(work / "Y.npy"), "--experts", str(work / "E.json")]
    result = subprocess.run(command + args, capture_output=True, text=True,
                            timeout=ENGINE_TIMEOUT_S)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command + args)} exited with "
                             f"{result.returncode}:\n{result.stderr}")
    return np.load(work / "Y.npy"), json.loads((work / "E.json").read_text())


class ParityCase:
    """One config x batch: a random model, random normal images, and the
    reference's and the engine's outputs on them."""

    def __init__(self, config_name: str, batch_size: int, work: Path):
        self.name = config_name
        cfg = load_config(CONFIGS / f"{config_name}.json")
        config = model_config(cfg)
        state_dict = random_state_dict(config, MODEL_SEED)
        export_model(cfg, state_dict, work / "model", random_seed=MODEL_SEED)
        images = np.random.default_rng(batch_size).standard_normal(
            (batch_size, 3, config.image_size, config.image_size), dtype=np.float32)
        self._run_reference(VisionMoE(config), state_dict, images)
        self.eng_logits, eng_json = run_engine(engine_command(), work / "model",
                                               images, work)
        self.eng_routing = eng_json.get("images")

    def _run_reference(self, model: VisionMoE, state_dict: dict,
                       images: np.ndarray) -> None:
        model.load_state_dict(state_dict)
        with torch.no_grad():
            logits, routing = model.eval()(torch.from_numpy(images))
        self.ref_logits = logits.numpy()
        self.ref_routing = routing_json(routing, len(images))["images"]
        self.ties = near_tie_flags(routing, len(images))
        self.decisions = sum(layer.near_tie.numel() for layer in routing)
        self.near_ties = sum(int(layer.near_tie.sum()) for layer in routing)

    def check(self) -> None:
        """Asserts parity of every image up to any near-tie divergence."""
        if self.eng_logits.shape != self.ref_logits.shape:
            raise AssertionError(f"engine logits shape {self.eng_logits.shape}, "
                                 f"expected {self.ref_logits.shape}")
        if not isinstance(self.eng_routing, list) or \
                len(self.eng_routing) != len(self.ref_routing):
            raise AssertionError("engine experts JSON must have one "
                                 f"'images' entry per image ({len(self.ref_routing)})")
        compared = [b for b, (ref, eng, ties) in enumerate(zip(
            self.ref_routing, self.eng_routing, self.ties))
            if compare_image_routing(ref["layers"], eng["layers"], ties)]
        if not compared:
            raise AssertionError("every image diverged at a near tie: nothing "
                                 "was compared")
        error = np.abs(self.eng_logits[compared]
                       - self.ref_logits[compared]).max()
        print(f"parity {self.name} batch {len(self.ref_routing)}: max |logit "
              f"difference| {error:.2e} over {len(compared)} images, "
              f"{self.near_ties}/{self.decisions} near-tie decisions",
              file=sys.stderr)
        if not error <= LOGIT_TOLERANCE:
            raise AssertionError(f"max |logit difference| {error:.2e} > "
                                 f"{LOGIT_TOLERANCE}")


class EngineParityTest(unittest.TestCase):
    def setUp(self):
        if engine_command() is None:
            self.skipTest("ENGINE_RUN is not set: point it at the engine_run "
                          "binary, or run with --self-check")
        torch.set_num_threads(2)

    def run_case(self, config_name: str, batch_size: int) -> ParityCase:
        with tempfile.TemporaryDirectory() as work:
            case = ParityCase(config_name, batch_size, Path(work))
            case.check()
            return case

    def test_tiny_configs(self):
        near_ties = decisions = 0
        for name in TINY_CONFIGS:
            for batch_size in (1, 4):
                with self.subTest(config=name, batch=batch_size):
                    case = self.run_case(name, batch_size)
                    near_ties += case.near_ties
                    decisions += case.decisions
        self.assertLess(near_ties, MAX_NEAR_TIE_FRACTION * decisions,
                        f"{near_ties} of {decisions} routing decisions are near "
                        "ties: too many skipped for the test to mean much")

    def test_vmoe_tiny_224(self):
        # Full-size reference configuration: catches what tiny shapes cannot
        # (blocking thresholds, 196 tokens, 1000 classes).
        self.run_case("vmoe-tiny-224", 2)


# ----------------------------------------------------------------------------
# Reduced precision (docs/model-spec.md, "Numerics": reported; the target is
# >= 99% top-1 agreement)
# ----------------------------------------------------------------------------

# Max |logit difference| allowed on images routed as the reference routes
# them. The reference runs the model's own (bf16 or dequantised int8) expert
# weights in float32, so what remains is the engine's activation rounding:
# bf16 experts see bf16 rows (measured ~1e-3 on tiny models), int8 experts
# int8 rows (~1e-2), bf16 compute rounds every matmul input (~1e-2 on
# vmoe-tiny-224). About 4x margin over the measured figures.
REDUCED_TOLERANCE = {("bf16", "f32"): 1e-2, ("int8", "f32"): 5e-2,
                     ("float32", "bf16"): 5e-2, ("int8", "bf16"): 5e-2}


def same_routing(ref_layers: list, eng_layers: list) -> bool:
    return [_decisions(layer) for layer in ref_layers] == \
        [_decisions(layer) for layer in eng_layers]


class ReducedPrecisionParityTest(unittest.TestCase):
    """Engine with bf16/int8 experts and bf16 compute against the PyTorch
    reference of the same model directory."""

    def setUp(self):
        if engine_command() is None or SELF_CHECK:
            self.skipTest("needs the C++ engine (ENGINE_RUN)")
        torch.set_num_threads(2)

    def run_case(self, config_name: str, precision: str, dtype: str,
                 batch_size: int) -> None:
        cfg = load_config(CONFIGS / f"{config_name}.json")
        config = model_config(cfg)
        images = np.random.default_rng(batch_size).standard_normal(
            (batch_size, 3, config.image_size, config.image_size), dtype=np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            export_model(cfg, random_state_dict(config, MODEL_SEED), work / "model",
                         precision, random_seed=MODEL_SEED)
            with torch.no_grad():
                ref_logits, routing = load_reference(work / "model")(
                    torch.from_numpy(images))
            ref_routing = routing_json(routing, batch_size)["images"]
            logits, eng_json = run_engine(engine_command() + ["--dtype", dtype],
                                          work / "model", images, work)
        alike = [b for b, (ref, eng) in enumerate(zip(ref_routing, eng_json["images"]))
                 if same_routing(ref["layers"], eng["layers"])]
        error = np.abs(logits[alike] - ref_logits.numpy()[alike]).max()
        print(f"reduced precision {config_name} {precision} experts, {dtype} "
              f"compute, batch {batch_size}: max |logit difference| {error:.2e} "
              f"over {len(alike)} images routed as the reference", file=sys.stderr)
        self.assertGreaterEqual(len(alike), (batch_size + 1) // 2,
                                "most images changed routing")
        self.assertLessEqual(error, REDUCED_TOLERANCE[(precision, dtype)])

    def test_tiny_configs(self):
        for name in ("tiny-image", "tiny-token"):
            for precision, dtype in REDUCED_TOLERANCE:
                with self.subTest(config=name, precision=precision, dtype=dtype):
                    self.run_case(name, precision, dtype, 4)

    def test_vmoe_tiny_224(self):
        for precision, dtype in (("float32", "bf16"), ("int8", "bf16")):
            with self.subTest(precision=precision, dtype=dtype):
                self.run_case("vmoe-tiny-224", precision, dtype, 2)


class ComparisonTest(unittest.TestCase):
    """The comparison itself, on hand-made routing (needs no engine)."""

    IMAGE = {"layer": 1, "experts": [2, 0], "weights": [0.7, 0.3]}
    TOKEN = {"layer": 3, "token_experts": [[0, 1], [1, 2]],
             "token_weights": [[0.6, 0.3], [0.5, 0.4]],
             "token_kept": [[True, True], [True, False]]}

    def compare(self, eng_image, eng_token, ties=(False, [False, False])):
        return compare_image_routing([self.IMAGE, self.TOKEN],
                                     [eng_image, eng_token], list(ties))

    def test_identical_routing_matches(self):
        self.assertTrue(self.compare(dict(self.IMAGE), dict(self.TOKEN)))

    def test_different_choice_fails_unless_near_tie(self):
        swapped = dict(self.IMAGE, experts=[0, 2])
        with self.assertRaisesRegex(AssertionError, "layer 1: 1 routing"):
            self.compare(swapped, self.TOKEN)
        self.assertFalse(self.compare(swapped, self.TOKEN, (True, [False, False])))

    def test_different_kept_flag_fails_unless_near_tie(self):
        dropped = dict(self.TOKEN, token_kept=[[True, True], [True, True]])
        with self.assertRaisesRegex(AssertionError, r"token 1 \(experts, kept\)"):
            self.compare(self.IMAGE, dropped)
        self.assertFalse(self.compare(self.IMAGE, dropped, (False, [False, True])))

    def test_weights_beyond_tolerance_fail(self):
        with self.assertRaisesRegex(AssertionError, "gate weights differ"):
            self.compare(dict(self.IMAGE, weights=[0.71, 0.29]), self.TOKEN)

    def test_missing_layer_or_field_fails(self):
        with self.assertRaisesRegex(AssertionError, "MoE layers"):
            compare_image_routing([self.IMAGE], [], [False])
        without_kept = {k: v for k, v in self.TOKEN.items() if k != "token_kept"}
        with self.assertRaisesRegex(AssertionError, "fields"):
            self.compare(self.IMAGE, without_kept)


if __name__ == "__main__":
    if "--self-check" in sys.argv:
        sys.argv.remove("--self-check")
        SELF_CHECK = True
    unittest.main()
