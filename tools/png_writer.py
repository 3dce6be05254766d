"""A minimal PNG writer (stdlib + numpy): one IDAT, filter type 0 per row.

Enough for test images and the demo's samples; Debian's python3-pil is not a
dependency of this project.
"""

import struct
import zlib
from pathlib import Path

import numpy as np

GREY, RGB = 0, 2  # PNG colour types used here.


def png_bytes(samples: np.ndarray, color_type: int, bit_depth: int = 8) -> bytes:
    """`samples` is [H, W] or [H, W, C] uint8 (or uint16 with bit_depth 16)."""
    height, width = samples.shape[:2]
    raw = samples.astype(">u2") if bit_depth == 16 else samples.astype(np.uint8)
    rows = raw.reshape(height, -1).view(np.uint8)
    scanlines = np.hstack([np.zeros((height, 1), np.uint8), rows]).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(scanlines, 9)) + chunk(b"IEND", b""))


def write_png(path: Path, image: np.ndarray) -> None:
    """Writes a uint8 greyscale [H, W] or RGB [H, W, 3] image."""
    color_type = GREY if image.ndim == 2 else RGB
    Path(path).write_bytes(png_bytes(image, color_type))
