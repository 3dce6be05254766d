"""Reading and writing the model directory format of docs/model-format.md.

Owns the byte layout: safetensors files whose data section starts at a
multiple of 64 and whose tensors each start at a multiple of 64 from the start
of the file (gaps filled with U8 `__pad__.<k>` tensors, since safetensors
forbids holes), and the names of the files inside a model directory.
Writing is done here with struct/json/numpy so the layout is explicit rather
than left to a library's choices.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np

# One cache line and one AVX-512 vector: oneDNN can read aligned weights
# straight from the aligned buffer the gateway reads each file into.
ALIGNMENT_BYTES = 64
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.safetensors"
PAD_PREFIX = "__pad__."
# safetensors dtype name -> numpy dtype (little-endian). numpy has no
# bfloat16: BF16 tensors travel as their raw 16-bit patterns in uint16
# arrays (the only use of uint16 here), decoded by float32_state_dict().
DTYPES = {"F32": np.dtype("<f4"), "BF16": np.dtype("<u2"),
          "I8": np.dtype("i1"), "U8": np.dtype("u1")}
# Per-output-channel scale of an int8 weight (docs/model-format.md).
SCALE_SUFFIX = "_scale"

_EXPERT_NAME = re.compile(r"^blocks\.(\d+)\.moe\.experts\.(\d+)\.")


def expert_file(layer: int, expert: int) -> str:
    """Path, relative to the model directory, of one expert's weight file."""
    return f"experts/block{layer:02d}_expert{expert:03d}.safetensors"


def file_for_tensor(name: str) -> str:
    """The file a tensor belongs in: its expert's own file, or the model file."""
    match = _EXPERT_NAME.match(name)
    if match:
        return expert_file(int(match.group(1)), int(match.group(2)))
    return MODEL_FILE


@dataclasses.dataclass
class WrittenFile:
    """What the manifest needs to know about a written weight file."""
    sha256: str
    size_bytes: int
    # name -> (offset_bytes from the start of the file, size_bytes); real
    # tensors only, no padding.
    tensors: dict[str, tuple[int, int]]


def dtype_name(array: np.ndarray) -> str:
    """The safetensors dtype name of an array (uint16 is BF16, see DTYPES)."""
    for name, dtype in DTYPES.items():
        if array.dtype == dtype:
            return name
    raise ValueError(f"cannot store dtype {array.dtype} (supported: {list(DTYPES)})")


def _layout(tensors: list[tuple[str, np.ndarray]]):
    """Plans the data section: returns (header, chunks), the safetensors header
    object and the arrays in file order, padding included. Offsets are relative
    to the data section, which itself starts 64-aligned, so aligning them
    aligns the offsets from the start of the file too."""
    header = {"__metadata__": {"format": "pt"}}
    chunks, cursor, pads = [], 0, 0
    for name, array in tensors:
        placed = [(name, array)]
        gap = -cursor % ALIGNMENT_BYTES
        if gap:
            placed.insert(0, (f"{PAD_PREFIX}{pads}", np.zeros(gap, np.uint8)))
            pads += 1
        for entry_name, data in placed:
            header[entry_name] = {"dtype": dtype_name(data),
                                  "shape": list(data.shape),
                                  "data_offsets": [cursor, cursor + data.nbytes]}
            chunks.append(data)
            cursor += data.nbytes
    return header, chunks


def _encode_header(header: dict) -> bytes:
    """JSON header padded with trailing spaces (which safetensors allows) so
    that the data section starts at a multiple of ALIGNMENT_BYTES."""
    text = json.dumps(header, separators=(",", ":")).encode()
    return text + b" " * (-(8 + len(text)) % ALIGNMENT_BYTES)


def write_safetensors(path: Path, tensors: list[tuple[str, np.ndarray]]) -> WrittenFile:
    """Writes `tensors` (name, little-endian array) in the given order."""
    header, chunks = _layout(tensors)
    header_bytes = _encode_header(header)
    data_start = 8 + len(header_bytes)
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as out:
        for piece in [struct.pack("<Q", len(header_bytes)), header_bytes,
                      *(chunk.tobytes() for chunk in chunks)]:
            out.write(piece)
            digest.update(piece)
            size += len(piece)
    placed = {name: (data_start + entry["data_offsets"][0],
                     entry["data_offsets"][1] - entry["data_offsets"][0])
              for name, entry in header.items()
              if name != "__metadata__" and not name.startswith(PAD_PREFIX)}
    return WrittenFile(digest.hexdigest(), size, placed)


def read_safetensors_header(path: Path) -> tuple[int, dict]:
    """Returns (data_start, header): the offset of the data section from the
    start of the file and the parsed JSON header, `__metadata__` and padding
    entries included."""
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) != 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (length,) = struct.unpack("<Q", prefix)
        text = f.read(length)
    if len(text) != length:
        raise ValueError(f"{path}: header length {length} runs past the end")
    return 8 + length, json.loads(text)


def _array_at(data: bytes, dtype_name: str, shape: list[int], offset: int,
              size: int, what: str) -> np.ndarray:
    dtype = DTYPES.get(dtype_name)
    if dtype is None:
        raise ValueError(f"{what}: dtype {dtype_name} not supported by this reader")
    count = int(np.prod(shape, dtype=np.int64))
    if count * dtype.itemsize != size or offset + size > len(data):
        raise ValueError(f"{what}: {size} bytes at offset {offset} do not hold "
                         f"{dtype_name}{list(shape)} inside a {len(data)}-byte file")
    return np.frombuffer(data, dtype, count, offset).reshape(shape).copy()


def file_sha256(path: Path) -> str:
    """Lowercase hex SHA-256 of a file, as the manifest records it."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """Decodes raw bfloat16 patterns (uint16) to float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_state_dict(tensors: dict[str, np.ndarray],
                       dtypes: dict[str, str]) -> dict[str, np.ndarray]:
    """The float32 weights a reduced-precision model stands for: BF16 decoded,
    I8 multiplied by its per-output-channel `<name>_scale` (which is dropped).
    `dtypes` maps tensor names to their manifest dtype."""
    result = {}
    for name, array in tensors.items():
        if name.endswith(SCALE_SUFFIX) and name[:-len(SCALE_SUFFIX)] in tensors:
            continue
        if dtypes[name] == "BF16":
            array = bf16_to_float32(array)
        elif dtypes[name] == "I8":
            scale = tensors[name + SCALE_SUFFIX]
            array = array.astype(np.float32) * scale.reshape(-1, 1)
        result[name] = array
    return result


def load_model_dir(model_dir: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """Reads a model directory the way the gateway does: the manifest, every
    file checked against its size and sha256, then every tensor from the file
    and offset the manifest gives. Returns (manifest, name -> array)."""
    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    contents = {}
    for entry in manifest["files"]:
        data = (model_dir / entry["path"]).read_bytes()
        if len(data) != entry["size_bytes"] or \
                hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise ValueError(f"{model_dir / entry['path']}: size or sha256 "
                             "differs from the manifest")
        contents[entry["path"]] = data
    tensors = {t["name"]: _array_at(contents[t["file"]], t["dtype"], t["shape"],
                                    t["offset_bytes"], t["size_bytes"], t["name"])
               for t in manifest["tensors"]}
    return manifest, tensors
