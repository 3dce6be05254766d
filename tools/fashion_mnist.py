"""Fashion-MNIST from Debian's dataset-fashion-mnist package (no download).

The package installs the original IDX files, gzipped, under
/usr/share/datasets/fashion-mnist/.
"""

import gzip
import struct
from pathlib import Path

import numpy as np

ROOT = Path("/usr/share/datasets/fashion-mnist")
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
          "Shirt", "Sneaker", "Bag", "Ankle boot"]
_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
          "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of "train" or "test"."""
    images, labels = _FILES[split]
    if not (ROOT / images).exists():
        raise FileNotFoundError(
            f"{ROOT / images} is missing: install dataset-fashion-mnist "
            "(tools/setup.sh does)")
    return _read_idx(ROOT / images), _read_idx(ROOT / labels)
