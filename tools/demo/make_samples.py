"""Writes the first N Fashion-MNIST test images as PNG files for the demo.

  /usr/bin/python3 -m tools.demo.make_samples OUT_DIR [N]

Files are named NNNN-<label>.png so that a person can check the gateway's
answers at a glance (NNNN is the test-set index).
"""

import sys
from pathlib import Path

from tools.fashion_mnist import LABELS, load
from tools.png_writer import write_png


def main() -> int:
    out = Path(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    images, labels = load("test")
    out.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        name = LABELS[labels[i]].lower().replace("/", "-").replace(" ", "-")
        write_png(out / f"{i:04d}-{name}.png", images[i])
    print(f"wrote {count} samples to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
