#!/usr/bin/python3
"""Smoke test of tools/bench/fleet_load_run.py: its short form on the small test
model (4 cameras, 3 s runs). Checks that the gateway, edge-loadtest and
engine_bench run together and that the JSON report is complete and
consistent (the half-load run offers half of what saturation served, every
frame of it answered); the timings are not judged.

  test_fleet_load_run.py --build BUILD --model_dir DIR --work_dir DIR
"""

import argparse
import json
import subprocess
import sys
import unittest
from pathlib import Path

ARGS = None
CAMERAS = 4


class FleetLoadRunSmokeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        ARGS.work_dir.mkdir(parents=True, exist_ok=True)
        out = ARGS.work_dir / "fleet.json"
        out.unlink(missing_ok=True)
        command = ["/usr/bin/python3", "-m", "tools.bench.fleet_load_run",
                   "--build", ARGS.build, "--model_dir", ARGS.model_dir,
                   "--cameras", str(CAMERAS), "--saturation_fps", "200",
                   "--duration_s", "3", "--warmup_s", "1",
                   "--engine_seconds", "0.3", "--json_out", out]
        cls.result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=240, check=False)
        print(cls.result.stdout[-3000:], cls.result.stderr[-3000:], sep="\n")
        cls.report = json.loads(out.read_text()) if out.exists() else None

    def test_exit_status_and_json(self):
        self.assertEqual(self.result.returncode, 0)
        self.assertIsNotNone(self.report)

    def test_saturation_and_engine_figures(self):
        saturated = self.report["saturated"]
        self.assertGreater(saturated["served_per_s"], 0)
        self.assertGreaterEqual(saturated["mean_batch"], 1)
        self.assertEqual(self.report["engine_at_batch"]["batch"],
                         saturated["mean_batch"])
        self.assertEqual(self.report["engine_batch1"]["batch"], 1)
        self.assertGreater(self.report["gateway_over_engine"], 0)

    def test_half_load_is_half_of_what_saturation_served(self):
        half = self.report["half_load"]
        self.assertAlmostEqual(half["fps_per_camera"] * CAMERAS * 2,
                               self.report["saturated"]["served_per_s"],
                               places=2)
        self.assertGreater(half["latency_ms"]["count"], 0)
        self.assertLessEqual(half["latency_ms"]["p50"],
                             half["latency_ms"]["p99"])
        self.assertGreater(self.report["half_load_p99_over_batch1_ms"], 0)

    def test_verdicts_printed(self):
        self.assertIn("saturated:", self.result.stdout)
        self.assertIn("half load", self.result.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", type=Path, required=True)
    parser.add_argument("--model_dir", type=Path, required=True)
    parser.add_argument("--work_dir", type=Path, required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0], *rest])
