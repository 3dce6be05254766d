#!/usr/bin/python3
"""Tests of tools/model/export_model.py against docs/model-format.md.

Each check reads the written bytes itself (safetensors header, offsets,
checksums) rather than trusting the exporter's own bookkeeping.
"""

import json
import math
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch

from tools import REPO
from tools.model import CONFIGS
from tools.model.export_model import (export_model, load_config, model_config,
                                      random_state_dict)
from tools.model.model_format import (DTYPES, PAD_PREFIX, bf16_to_float32,
                                      file_sha256, load_model_dir,
                                      read_safetensors_header)
from tools.model.reference_run import load_reference
from tools.model.vmoe_reference import VisionMoE, tensor_shapes

# Per-token routing with a class token: exercises every tensor kind
# (cls_token, dense and MoE blocks, expert files).
CONFIG = CONFIGS / "tiny-token-cls-nobpr.json"


def export_random(out_dir: Path, seed: int = 3, config_path: Path = CONFIG) -> dict:
    cfg = load_config(config_path)
    state_dict = random_state_dict(model_config(cfg), seed)
    return export_model(cfg, state_dict, out_dir, random_seed=seed)


def run_exporter(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tools.model.export_model", *map(str, args)],
        capture_output=True, text=True, timeout=120)


def files_on_disk(model_dir: Path) -> set[str]:
    return {str(p.relative_to(model_dir)) for p in model_dir.rglob("*")
            if p.is_file() and p.name != "manifest.json"}


def proto_fields() -> dict[str, set[str]]:
    """message name -> field names, from proto/model_manifest.proto."""
    text = (REPO / "proto" / "model_manifest.proto").read_text()
    return {name: set(re.findall(r"^\s*(?:optional |repeated )?\w+ (\w+) = \d+;",
                                 body, re.M))
            for name, body in re.findall(r"message (\w+) \{(.*?)\n\}", text, re.S)}


class ExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(2)
        cls.tmp = tempfile.TemporaryDirectory()
        cls.model_dir = Path(cls.tmp.name) / "model"
        cls.manifest = export_random(cls.model_dir)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_same_seed_gives_identical_files(self):
        with tempfile.TemporaryDirectory() as tmp:
            again = export_random(Path(tmp) / "again")
            other = export_random(Path(tmp) / "other", seed=4)
        self.assertEqual(again, self.manifest)
        self.assertNotEqual(other["files"], self.manifest["files"])

    def test_manifest_describes_the_model(self):
        m = self.manifest
        self.assertEqual(m["format_version"], 1)
        self.assertEqual(m["name"], "tiny-token-cls-nobpr")  # the config's stem
        self.assertTrue(m["description"].startswith(
            "random weights (seed 3): for tests and benchmarks only"))
        self.assertEqual(m["architecture"]["norm_eps"], 1e-6)
        self.assertEqual(m["architecture"]["moe"]["renormalize"], True)
        self.assertEqual(m["preprocessing"], {"mean": [0.5] * 3, "std": [0.5] * 3})
        self.assertEqual(m["labels"], [f"class_{i}" for i in range(10)])
        self.assertEqual(m["precision"], "float32")
        written = json.loads((self.model_dir / "manifest.json").read_text())
        self.assertEqual(written, m)

    def test_manifest_uses_only_schema_fields(self):
        # The gateway's parser rejects unknown fields.
        fields = proto_fields()
        m = self.manifest
        checks = [("Manifest", m), ("Architecture", m["architecture"]),
                  ("MoeConfig", m["architecture"]["moe"]),
                  ("Preprocessing", m["preprocessing"])]
        checks += [("FileEntry", f) for f in m["files"]]
        checks += [("TensorEntry", t) for t in m["tensors"]]
        for message, obj in checks:
            self.assertLessEqual(set(obj), fields[message], message)

    def test_manifest_lists_every_tensor_and_file(self):
        config = model_config(load_config(CONFIG))
        expected = {n: list(s) for n, s in tensor_shapes(config).items()}
        listed = {t["name"]: t["shape"] for t in self.manifest["tensors"]}
        self.assertEqual(listed, expected)
        self.assertEqual({f["path"] for f in self.manifest["files"]},
                         files_on_disk(self.model_dir))
        for entry in self.manifest["files"]:
            path = self.model_dir / entry["path"]
            self.assertEqual(entry["size_bytes"], path.stat().st_size, path)
            self.assertEqual(entry["sha256"], file_sha256(path), path)

    def test_tensor_entries_match_safetensors_headers(self):
        for t in self.manifest["tensors"]:
            data_start, header = read_safetensors_header(self.model_dir / t["file"])
            begin, end = header[t["name"]]["data_offsets"]
            self.assertEqual(t["offset_bytes"], data_start + begin, t["name"])
            self.assertEqual(t["size_bytes"], end - begin, t["name"])
            self.assertEqual(t["size_bytes"], 4 * math.prod(t["shape"]), t["name"])
            self.assertEqual(header[t["name"]]["shape"], t["shape"])
            self.assertEqual((t["dtype"], header[t["name"]]["dtype"]), ("F32", "F32"))
            self.assertEqual(t["offset_bytes"] % 64, 0, t["name"])

    def test_expert_files_hold_exactly_their_expert(self):
        for path in files_on_disk(self.model_dir) - {"model.safetensors"}:
            layer, expert = map(int, re.fullmatch(
                r"experts/block(\d\d)_expert(\d\d\d)\.safetensors", path).groups())
            _, header = read_safetensors_header(self.model_dir / path)
            real = {n for n in header if n != "__metadata__"
                    and not n.startswith(PAD_PREFIX)}
            prefix = f"blocks.{layer}.moe.experts.{expert}."
            self.assertEqual(real, {prefix + s for s in (
                "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")})

    def test_files_are_valid_safetensors_without_holes(self):
        for path in files_on_disk(self.model_dir):
            with self.subTest(file=path):
                self.check_safetensors(self.model_dir / path)

    def check_safetensors(self, path: Path):
        raw = path.read_bytes()
        data_start, header = read_safetensors_header(path)
        self.assertEqual(data_start % 64, 0)
        text = raw[8:data_start]
        self.assertTrue(text.startswith(b"{") and text.rstrip(b" ").endswith(b"}"))
        self.assertEqual(header.pop("__metadata__"), {"format": "pt"})
        cursor = 0  # every byte of the data section belongs to one entry
        for name, entry in sorted(header.items(), key=lambda e: e[1]["data_offsets"]):
            begin, end = entry["data_offsets"]
            self.assertEqual(begin, cursor, f"hole or overlap before {name}")
            itemsize = DTYPES[entry["dtype"]].itemsize
            self.assertEqual(end - begin, itemsize * math.prod(entry["shape"]), name)
            if name.startswith(PAD_PREFIX):
                self.assertEqual(entry["dtype"], "U8")
                self.assertLess(end - begin, 64)
            else:
                self.assertEqual((data_start + begin) % 64, 0, name)
            cursor = end
        self.assertEqual(data_start + cursor, len(raw), "bytes after the last tensor")

    def test_round_trip_gives_identical_logits(self):
        cfg = load_config(CONFIG)
        config = model_config(cfg)
        original = VisionMoE(config)
        original.load_state_dict(random_state_dict(config, 3))
        images = torch.randn(4, 3, config.image_size, config.image_size,
                             generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected, _ = original.eval()(images)
            actual, _ = load_reference(self.model_dir)(images)
        self.assertTrue(torch.equal(expected, actual))

    def test_existing_output_directory_is_refused(self):
        with self.assertRaisesRegex(ValueError, "exists and is not empty"):
            export_random(self.model_dir)


class ReducedPrecisionExportTest(unittest.TestCase):
    """--expert-dtype bfloat16 / int8 (docs/model-format.md, "Reduced
    precision"): expert fc weights change type, everything else stays F32."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cfg = load_config(CONFIG)
        cls.state_dict = random_state_dict(model_config(cfg), 3)
        # One all-zero output channel: its int8 scale must be 1, not 0.
        cls.state_dict["blocks.3.moe.experts.1.fc1.weight"][5].zero_()
        cls.models = {p: Path(cls.tmp.name) / p for p in ("bf16", "int8")}
        cls.manifests = {p: export_model(cfg, cls.state_dict, d, p)
                         for p, d in cls.models.items()}

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def stored(self, precision: str) -> dict:
        manifest, tensors = load_model_dir(self.models[precision])
        dtypes = {t["name"]: t["dtype"] for t in manifest["tensors"]}
        return {n: (dtypes[n], a) for n, a in tensors.items()}

    def test_only_expert_weights_change_type(self):
        for precision, dtype in (("bf16", "BF16"), ("int8", "I8")):
            manifest = self.manifests[precision]
            self.assertEqual(manifest["precision"], precision)
            for t in manifest["tensors"]:
                expert_weight = re.search(r"experts\.\d+\.fc[12]\.weight$", t["name"])
                self.assertEqual(t["dtype"], dtype if expert_weight else "F32",
                                 t["name"])
                self.assertEqual(t["size_bytes"], DTYPES[t["dtype"]].itemsize
                                 * math.prod(t["shape"]), t["name"])

    def test_bfloat16_rounds_to_nearest_even(self):
        for name, (dtype, bits) in self.stored("bf16").items():
            if dtype != "BF16":
                continue
            original = self.state_dict[name].to(torch.float32)
            want = original.to(torch.bfloat16).view(torch.int16).numpy()
            self.assertTrue(np.array_equal(bits.view(np.int16), want), name)
            decoded = torch.from_numpy(bf16_to_float32(bits))
            self.assertLessEqual(float((decoded - original).abs().max()),
                                 float(original.abs().max()) * 2 ** -8, name)

    def test_int8_scales_are_per_output_channel(self):
        stored = self.stored("int8")
        scaled = [n for n, (dtype, _) in stored.items() if dtype == "I8"]
        self.assertTrue(scaled)
        for name in scaled:
            q = stored[name][1].astype(np.float32)
            scale = stored[name + "_scale"][1]
            w = self.state_dict[name].numpy()
            self.assertEqual(scale.shape, (w.shape[0],), name)
            row_max = np.abs(w).max(axis=1)
            expected = np.where(row_max > 0, row_max / 127, 1.0)
            np.testing.assert_allclose(scale, expected, rtol=1e-6, err_msg=name)
            self.assertEqual(np.abs(q).max(), 127, name)
            error = np.abs(q * scale[:, None] - w)
            self.assertTrue((error <= scale[:, None] / 2 * (1 + 1e-5)).all(), name)
        zero_row = "blocks.3.moe.experts.1.fc1.weight"
        self.assertEqual(stored[zero_row + "_scale"][1][5], 1.0)

    def test_int8_scale_follows_its_weight_in_the_expert_file(self):
        listed = [t["name"] for t in self.manifests["int8"]["tensors"]
                  if t["name"].startswith("blocks.3.moe.experts.0.")]
        self.assertEqual(listed, [f"blocks.3.moe.experts.0.{n}" for n in (
            "fc1.weight", "fc1.weight_scale", "fc1.bias",
            "fc2.weight", "fc2.weight_scale", "fc2.bias")])

    def test_reference_reads_the_dequantised_weights(self):
        config = model_config(load_config(CONFIG))
        images = torch.randn(2, 3, config.image_size, config.image_size,
                             generator=torch.Generator().manual_seed(0))
        original = VisionMoE(config)
        original.load_state_dict(self.state_dict)
        with torch.no_grad():
            expected, _ = original.eval()(images)
            for precision in self.models:
                actual, _ = load_reference(self.models[precision])(images)
                error = float((actual - expected).abs().max())
                self.assertLess(error, 0.05, precision)
                self.assertGreater(error, 0, precision)  # it did change.


class ExportCommandLineTest(unittest.TestCase):
    """The CLI, run as users run it (a subprocess of /usr/bin/python3)."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.work = Path(self.tmp.name)
        self.addCleanup(self.tmp.cleanup)
        self.state_dict = random_state_dict(model_config(load_config(CONFIG)), 5)

    def export_weights(self, state_dict) -> subprocess.CompletedProcess:
        weights = self.work / "weights.pt"
        torch.save(state_dict, weights)
        return run_exporter("--config", CONFIG, "--weights", weights,
                            "--out", self.work / "out")

    def test_weights_export_matches_in_process_export(self):
        result = self.export_weights(self.state_dict)
        self.assertEqual(result.returncode, 0, result.stderr)
        manifest = export_model(load_config(CONFIG), self.state_dict,
                                self.work / "direct")
        written = json.loads((self.work / "out" / "manifest.json").read_text())
        self.assertEqual(written["files"], manifest["files"])
        self.assertEqual(written["description"], json.loads(CONFIG.read_text())[
            "description"])

    def test_random_seed_export_matches_in_process_export(self):
        result = run_exporter("--config", CONFIG, "--random-seed", 3,
                              "--out", self.work / "out")
        self.assertEqual(result.returncode, 0, result.stderr)
        written = json.loads((self.work / "out" / "manifest.json").read_text())
        self.assertEqual(written, export_random(self.work / "direct", seed=3))

    def assert_rejected(self, state_dict, *expected_in_message):
        result = self.export_weights(state_dict)
        self.assertNotEqual(result.returncode, 0)
        for text in expected_in_message:
            self.assertIn(text, result.stderr)
        self.assertFalse((self.work / "out").exists(), "wrote despite the error")

    def test_missing_tensor_is_named(self):
        del self.state_dict["blocks.3.moe.experts.2.fc2.bias"]
        self.assert_rejected(
            self.state_dict,
            "missing: blocks.3.moe.experts.2.fc2.bias (expected shape [32])")

    def test_unexpected_tensor_is_named(self):
        self.state_dict["blocks.1.mlp.fc1.weight"] = torch.zeros(64, 32)
        self.assert_rejected(self.state_dict,
                             "unexpected: blocks.1.mlp.fc1.weight (shape [64, 32])")

    def test_misshaped_tensor_is_named_with_both_shapes(self):
        self.state_dict["blocks.1.moe.router.weight"] = torch.zeros(8, 32)
        self.assert_rejected(self.state_dict, "wrong shape: blocks.1.moe.router.weight:"
                             " expected [4, 32], got [8, 32]")

    def test_every_problem_is_reported_at_once(self):
        del self.state_dict["cls_token"]
        self.state_dict["extra"] = torch.zeros(1)
        self.state_dict["head.bias"] = torch.zeros(11)
        self.assert_rejected(self.state_dict, "missing: cls_token", "unexpected: extra",
                             "wrong shape: head.bias")

    def test_unknown_expert_dtype_is_refused(self):
        result = run_exporter("--config", CONFIG, "--random-seed", 1,
                              "--out", self.work / "out", "--expert-dtype", "fp16")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("invalid choice: 'fp16'", result.stderr)
        self.assertFalse((self.work / "out").exists())

    def test_from_model_reexports_at_another_precision(self):
        source = self.work / "f32"
        export_random(source)
        result = run_exporter("--from-model", source, "--expert-dtype", "int8",
                              "--out", self.work / "int8")
        self.assertEqual(result.returncode, 0, result.stderr)
        want = export_model(*self.source_of(source), self.work / "direct", "int8")
        written = json.loads((self.work / "int8" / "manifest.json").read_text())
        self.assertEqual(written, want)
        # A reduced-precision model is not a source: its rounding would stack.
        again = run_exporter("--from-model", self.work / "int8",
                             "--out", self.work / "again")
        self.assertNotEqual(again.returncode, 0)
        self.assertIn("re-export from a float32 model", again.stderr)

    def source_of(self, model_dir: Path):
        manifest = json.loads((model_dir / "manifest.json").read_text())
        cfg = {k: manifest[k] for k in ("name", "description", "architecture",
                                       "preprocessing", "labels", "superclasses")}
        return cfg, random_state_dict(model_config(cfg), 3)

    def test_config_error_names_the_field(self):
        config = json.loads(CONFIG.read_text())
        config["architecture"]["moe"]["num_expert"] = 4
        path = self.work / "typo.json"
        path.write_text(json.dumps(config))
        result = run_exporter("--config", path, "--random-seed", 1,
                              "--out", self.work / "out")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("'num_expert'", result.stderr)


if __name__ == "__main__":
    unittest.main()
