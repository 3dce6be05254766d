"""ImageDecoder vs PyTorch: the gateway's preprocessing must equal the
training pipeline's, torch.nn.functional.interpolate(mode="bilinear",
align_corners=False, antialias=False) on float32 pixels, then
(x / 255 - mean) / std.

Drives the decode_image tool (server/decode_image_main.cc) named by the
DECODE_TOOL environment variable; ctest sets it. Inputs are raw RGB (exact)
and PNGs written by tools/png_writer.py (lossless, so also exact).
"""
import os
import subprocess
import tempfile
import unittest

import numpy as np
import torch
import torch.nn.functional as F

from tools.png_writer import png_bytes

DECODE_TOOL = os.environ.get("DECODE_TOOL")
TOLERANCE = 1e-4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def torch_reference(pixels_hwc, size, mean, std):
    """float32 [1, 3, size, size], as the training pipeline computes it."""
    x = torch.from_numpy(pixels_hwc.astype(np.float32)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear",
                      align_corners=False, antialias=False)
    x = x / 255.0
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - m) / s).numpy()


@unittest.skipUnless(DECODE_TOOL, "DECODE_TOOL is unset: set it to the path "
                     "of the decode_image binary (ctest does)")
class ImageDecoderParityTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.rng = np.random.default_rng(1234)

    def tearDown(self):
        self.tmp.cleanup()

    def decode(self, data, size, mean, std, rgb_shape=None):
        src = os.path.join(self.tmp.name, "input.bin")
        dst = os.path.join(self.tmp.name, "output.npy")
        with open(src, "wb") as f:
            f.write(data)
        cmd = [DECODE_TOOL, "--size", str(size), "--input", src,
               "--output", dst, "--mean", ",".join(map(str, mean)),
               "--std", ",".join(map(str, std))]
        if rgb_shape is not None:
            cmd += ["--rgb_width", str(rgb_shape[1]),
                    "--rgb_height", str(rgb_shape[0])]
        run = subprocess.run(cmd, capture_output=True, text=True)
        self.assertEqual(run.returncode, 0, run.stderr)
        return np.load(dst)

    def assert_matches_torch(self, got, pixels, size, mean, std, label):
        want = torch_reference(pixels, size, mean, std)
        self.assertEqual(got.shape, (1, 3, size, size), label)
        diff = float(np.max(np.abs(got - want)))
        print(f"{label}: max |diff| = {diff:.3g}")
        self.assertLessEqual(diff, TOLERANCE, label)

    def test_raw_rgb_matches_torch(self):
        # Smaller than, equal to and larger than S; square, odd, non-square.
        cases = [(17, 31, 224), (224, 224, 224), (480, 640, 224),
                 (700, 1000, 224), (223, 225, 224), (1, 1, 224), (2, 3, 224),
                 (481, 333, 96)]
        for height, width, size in cases:
            for mean, std in [((0.5,) * 3, (0.5,) * 3),
                              (IMAGENET_MEAN, IMAGENET_STD)]:
                pixels = self.rng.integers(0, 256, (height, width, 3),
                                           dtype=np.uint8)
                got = self.decode(pixels.tobytes(), size, mean, std,
                                  rgb_shape=(height, width))
                self.assert_matches_torch(
                    got, pixels, size, mean, std,
                    f"raw {width}x{height} -> {size} mean={mean}")

    def test_png_round_trip_matches_torch(self):
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        for height, width in [(31, 17), (224, 224), (700, 1000)]:
            pixels = self.rng.integers(0, 256, (height, width, 3),
                                       dtype=np.uint8)
            got = self.decode(png_bytes(pixels, 2, 8), 224, mean, std)
            self.assert_matches_torch(got, pixels, 224, mean, std,
                                      f"PNG RGB8 {width}x{height}")

    def test_greyscale_and_16bit_png_match_torch(self):
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        grey = self.rng.integers(0, 256, (300, 200, 1), dtype=np.uint8)
        got = self.decode(png_bytes(grey, 0, 8), 224, mean, std)
        self.assert_matches_torch(got, np.repeat(grey, 3, axis=2), 224, mean,
                                  std, "PNG grey8 200x300")
        deep = self.rng.integers(0, 65536, (150, 250, 3), dtype=np.uint16)
        got = self.decode(png_bytes(deep, 2, 16), 224, mean, std)
        # 16-bit samples keep their high byte.
        self.assert_matches_torch(got, (deep >> 8).astype(np.uint8), 224, mean,
                                  std, "PNG RGB16 250x150")


if __name__ == "__main__":
    unittest.main()
