#!/usr/bin/python3
"""Smoke test of tools/bench/benchmark_peers.py: its short form (--quick) on two
tiny configurations, one image-routed MoE (the small vmoe-tiny-224) and one
dense with a class token (the small vit-tiny-224). Checks that every tool
runs and that the JSON is complete and sane: every runtime measured at every
batch size, every runtime's logits within 1e-3 of the PyTorch reference
(ONNX Runtime on the k-experts export included), ratios and roofline
fraction present. Timings are not judged.

  test_benchmark_peers.py --build BUILD --node_modules DIR --work_dir DIR
"""

import argparse
import json
import subprocess
import sys
import unittest
from pathlib import Path

from tools.model import CONFIGS

MODELS = ("tiny-image", "tiny-dense")
RUNTIMES = ("engine", "engine-bf16", "onnxruntime", "torch-onednn",
            "torch-stock")
BATCHES = (1, 3)
ARGS = None


def has_bf16() -> bool:
    return " avx512_bf16" in Path("/proc/cpuinfo").read_text()


class BenchmarkPeersSmokeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        out = ARGS.work_dir / "peers.json"
        out.unlink(missing_ok=True)
        command = [sys.executable, "-m", "tools.bench.benchmark_peers", "--quick",
                   "--models", ",".join(str(CONFIGS / f"{m}.json")
                                        for m in MODELS),
                   "--batches", ",".join(map(str, BATCHES)),
                   "--build", ARGS.build, "--node_modules", ARGS.node_modules,
                   "--models_dir", ARGS.work_dir / "models",
                   "--work_dir", ARGS.work_dir / "onnx", "--json_out", out]
        cls.result = subprocess.run(command, capture_output=True, text=True,
                                 timeout=240, check=False)
        print(cls.result.stdout, cls.result.stderr[-3000:], sep="\n")
        cls.report = json.loads(out.read_text()) if out.exists() else None

    def test_exit_status_and_json(self):
        self.assertEqual(self.result.returncode, 0)
        self.assertIsNotNone(self.report)

    def test_roofline(self):
        best = self.report["roofline"]["best_gflops"]
        self.assertGreater(best["f32"], 0)
        if has_bf16():
            self.assertGreater(best["bf16"], 0)

    def test_every_runtime_at_every_batch(self):
        for model in MODELS:
            runtimes = self.report["models"][model]["runtimes"]
            self.assertEqual(sorted(runtimes), sorted(RUNTIMES), model)
            for name, runtime in runtimes.items():
                batches = [r["batch"] for r in runtime["results"]]
                self.assertEqual(batches, list(BATCHES), (model, name))
                for r in runtime["results"]:
                    self.assertGreater(r["images_per_s"], 0)
                    self.assertGreaterEqual(r["batches"], 1)
                    self.assertLessEqual(r["ms_per_batch_p50"],
                                         r["ms_per_batch_p99"])

    def test_outputs_match_reference(self):
        for model in MODELS:
            summary = self.report["models"][model]
            self.assertLess(summary["onnx_export"]["torch_export_max_abs_diff"],
                            1e-3)
            for name, runtime in summary["runtimes"].items():
                tolerance = runtime["verify"]["tolerance"]
                self.assertLess(runtime["verify"]["max_abs_diff"], tolerance,
                                (model, name))
                if name != "engine-bf16":
                    self.assertLessEqual(tolerance, 1e-3, (model, name))

    def test_ratios_and_roofline_fraction(self):
        for model in MODELS:
            summary = self.report["models"][model]
            peers = sorted(r for r in RUNTIMES if not r.startswith("engine"))
            for key in ("ratios", "ratios_bf16"):
                self.assertEqual(sorted(summary[key]), peers, key)
                for per_batch in summary[key].values():
                    self.assertEqual(sorted(per_batch),
                                     sorted(map(str, BATCHES)))
            for key in ("roofline_fraction", "roofline_fraction_bf16"):
                if key.endswith("bf16") and not has_bf16():
                    continue  # the roofline measures no bf16 rate there
                self.assertEqual(sorted(summary[key]), sorted(map(str, BATCHES)))
                for fraction in summary[key].values():
                    self.assertGreater(fraction["engine_gflops"], 0)
                    self.assertGreater(fraction["fraction"], 0)
            self.assertGreater(summary["macs_per_image"]["total"], 0)

    def test_table_printed(self):
        for model in MODELS:
            self.assertIn(f"{model}:", self.result.stdout)
        self.assertIn("engine / onnxruntime", self.result.stdout)
        self.assertIn("engine-bf16 / onnxruntime", self.result.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", type=Path, required=True)
    parser.add_argument("--node_modules", type=Path, required=True)
    parser.add_argument("--work_dir", type=Path, required=True)
    ARGS, rest = parser.parse_known_args()
    ARGS.work_dir.mkdir(parents=True, exist_ok=True)
    unittest.main(argv=[sys.argv[0]] + rest)
