"""Exports a V-MoE model directory (docs/model-format.md) for the gateway.

  /usr/bin/python3 -m tools.model.export_model \\
      --config tools/model/configs/vmoe-tiny-224.json \\
      --random-seed 1 --out models/vmoe-tiny-224-random
  /usr/bin/python3 -m tools.model.export_model --config CFG.json --weights W.pt --out DIR
  /usr/bin/python3 -m tools.model.export_model --from-model DIR --expert-dtype int8 --out DIR8

--expert-dtype stores the expert MLP weights as float32 (default), bfloat16
(round to nearest even) or int8 with one symmetric scale per output channel
(scale = max|w| / 127 over the channel's row, 1 for an all-zero row; the
real weight is scale * int8). Every other tensor stays float32. --from-model
re-exports an existing float32 model directory (its manifest supplies the
config), e.g. the trained models/fashion-vmoe at another expert precision.

CFG.json holds {"architecture", "preprocessing", "labels", "superclasses",
"name", "description"}; only "architecture" is required (docs/model-spec.md's
object; defaults are written out in the manifest). --weights takes a
torch.save(state_dict) with docs/model-spec.md's names; anything missing,
unexpected or mis-shaped is reported by name and nothing is written.
--random-seed builds deterministic random weights (same seed, byte-identical
files) whose outputs are spread out enough for parity tests.

Importable: export_model(), random_state_dict(), load_config().
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import torch

from tools.model.model_format import (MANIFEST_FILE, SCALE_SUFFIX, dtype_name,
                                      file_for_tensor, float32_state_dict,
                                      load_model_dir, write_safetensors)
from tools.model.vmoe_reference import ConfigError, ModelConfig, tensor_shapes

FORMAT_VERSION = 1
# --expert-dtype value -> the manifest's `precision` (docs/model-format.md).
EXPERT_DTYPES = {"float32": "float32", "bfloat16": "bf16", "int8": "int8"}
PRECISIONS = tuple(EXPERT_DTYPES.values())
_EXPERT_WEIGHT = re.compile(r"\.moe\.experts\.\d+\.fc[12]\.weight$")
# Symmetric int8 range: -127..127, so that negating a weight is exact.
_INT8_MAX = 127
_CONFIG_FIELDS = {"architecture", "preprocessing", "labels", "superclasses",
                  "name", "description"}
# timm's ViT normalisation, the default (docs/model-spec.md, "Preprocessing").
_DEFAULT_MEAN_STD = [0.5, 0.5, 0.5]
_LAYERNORM = re.compile(r"(^|\.)norm\d?\.(weight|bias)$")


class ExportError(ValueError):
    """A config, weights file or output directory the exporter cannot use."""


# ----------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------

def load_config(path: Path) -> dict:
    """Reads CFG.json; the model name defaults to the file's stem."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"cannot read config {path}: {e}") from e
    if not isinstance(cfg, dict):
        raise ExportError(f"config {path} must be a JSON object")
    cfg.setdefault("name", path.stem)
    return cfg


def model_config(cfg: dict) -> ModelConfig:
    """The validated ModelConfig of a CFG.json object."""
    if "architecture" not in cfg:
        raise ExportError("config: missing required field 'architecture'")
    try:
        return ModelConfig.from_architecture(cfg["architecture"])
    except ConfigError as e:
        raise ExportError(f"architecture: {e}") from e


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ExportError(f"precision {precision!r} is not one of "
                          f"{', '.join(PRECISIONS)}")


def _manifest_header(cfg: dict, config: ModelConfig) -> dict:
    """The manifest's descriptive fields, validated and with defaults."""
    unknown = sorted(set(cfg) - _CONFIG_FIELDS)
    if unknown:
        raise ExportError(f"config: unknown field(s) {unknown}; allowed: "
                          f"{sorted(_CONFIG_FIELDS)}")
    name, description = cfg.get("name"), cfg.get("description", "")
    if not isinstance(name, str) or not name:
        raise ExportError("config: name must be a non-empty string")
    if not isinstance(description, str):
        raise ExportError("config: description must be a string")
    return {"format_version": FORMAT_VERSION, "name": name,
            "description": description,
            "architecture": config.to_architecture(),
            "preprocessing": _preprocessing(cfg.get("preprocessing", {})),
            "labels": _labels(cfg.get("labels"), config.num_classes),
            "superclasses": _superclasses(cfg.get("superclasses", []),
                                          config.num_classes)}


def _preprocessing(obj: dict) -> dict:
    if not isinstance(obj, dict) or set(obj) - {"mean", "std"}:
        raise ExportError(f"preprocessing must be an object with mean and std, "
                          f"got {obj!r}")
    result = {}
    for key in ("mean", "std"):
        values = obj.get(key, _DEFAULT_MEAN_STD)
        if not (isinstance(values, list) and len(values) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool)
                for v in values)):
            raise ExportError(f"preprocessing.{key} must be 3 numbers (RGB), "
                              f"got {values!r}")
        result[key] = [float(v) for v in values]
    if min(result["std"]) <= 0:
        raise ExportError(f"preprocessing.std must be positive, got {result['std']}")
    return result


def _labels(labels, num_classes: int) -> list[str]:
    if labels is None:
        return [f"class_{i}" for i in range(num_classes)]
    if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)
            and len(labels) == num_classes):
        raise ExportError(f"labels must be {num_classes} strings (num_classes)")
    return labels


def _superclasses(groups, num_classes: int) -> list[dict]:
    if not isinstance(groups, list):
        raise ExportError("superclasses must be a list of {name, classes}")
    for group in groups:
        if not (isinstance(group, dict) and set(group) == {"name", "classes"}
                and isinstance(group["name"], str)
                and isinstance(group["classes"], list)
                and all(isinstance(c, int) and 0 <= c < num_classes
                        for c in group["classes"])):
            raise ExportError(f"superclass {group!r} must be {{name, classes}} "
                              f"with class indices in [0, {num_classes})")
    return groups


# ----------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------

def random_state_dict(config: ModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """Deterministic random weights for tests and benchmarks.

    Drawn in tensor_shapes() order from one seeded generator, so the same seed
    gives byte-identical tensors. The scales keep activations O(1) through
    every block (Linear weights N(0, 1/fan_in)) and make the outputs depend on
    every parameter (LayerNorm, bias and embedding noise), so parity tests
    compare meaningful numbers; routers get std 2/sqrt(D), giving gate
    probabilities far enough apart that near-ties are rare.
    """
    generator = torch.Generator().manual_seed(seed)
    return {name: _random_tensor(name, shape, config.dim, generator)
            for name, shape in tensor_shapes(config).items()}


def _random_tensor(name: str, shape: tuple, dim: int,
                   generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(shape, generator=generator)
    if _LAYERNORM.search(name):
        return noise * 0.1 + (1.0 if name.endswith(".weight") else 0.0)
    if name in ("cls_token", "pos_embed"):
        return noise * 0.1
    if name.endswith("router.weight"):
        return noise * (2.0 / math.sqrt(dim))
    if name.endswith(".weight"):  # Linear or the patch convolution
        return noise / math.sqrt(math.prod(shape[1:]))
    return noise * 0.02  # biases


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Reads a torch.save(state_dict); tensors only (no pickled code runs)."""
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad file
        raise ExportError(f"cannot load weights {path}: {e}") from e
    if not isinstance(state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ExportError(f"weights {path} must hold a state_dict "
                          "(a dict of name -> tensor)")
    return state_dict


def check_state_dict(config: ModelConfig, state_dict: dict) -> None:
    """Raises ExportError naming every missing, unexpected, mis-shaped or
    non-floating tensor, so one run shows everything to fix."""
    expected = tensor_shapes(config)
    problems = [f"missing: {name} (expected shape {list(shape)})"
                for name, shape in expected.items() if name not in state_dict]
    for name, tensor in state_dict.items():
        if name not in expected:
            problems.append(f"unexpected: {name} (shape {list(tensor.shape)})")
        elif tuple(tensor.shape) != expected[name]:
            problems.append(f"wrong shape: {name}: expected "
                            f"{list(expected[name])}, got {list(tensor.shape)}")
        elif not tensor.is_floating_point():
            problems.append(f"not floating point: {name} ({tensor.dtype})")
    if problems:
        raise ExportError("weights do not match the architecture:\n  "
                          + "\n  ".join(problems))


# ----------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------

def export_model(cfg: dict, state_dict: dict, out_dir: Path,
                 precision: str = "float32", random_seed: int | None = None) -> dict:
    """Writes the model directory `out_dir` and returns its manifest.

    cfg: the CFG.json object (with a name). state_dict: tensors named as in
    docs/model-spec.md.
    random_seed: the seed random_state_dict used, if the weights are random;
    the description then says so, so nobody mistakes them for a trained model.
    Everything is validated before anything is written; `out_dir` must be
    absent or empty so stale expert files cannot survive a re-export.
    """
    check_precision(precision)
    config = model_config(cfg)
    manifest = _manifest_header(cfg, config)
    check_state_dict(config, state_dict)
    if random_seed is not None:
        note = f"random weights (seed {random_seed}): for tests and benchmarks only"
        manifest["description"] = ". ".join(
            part for part in (note, manifest["description"]) if part)
    manifest["precision"] = precision
    out_dir = _prepare_out_dir(Path(out_dir))
    manifest["files"], manifest["tensors"] = _write_weight_files(
        config, state_dict, out_dir, precision)
    (out_dir / MANIFEST_FILE).write_text(_manifest_json(manifest) + "\n")
    return manifest


def _prepare_out_dir(out_dir: Path) -> Path:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"output directory {out_dir} exists and is not empty; "
                          "remove it or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def to_bfloat16_bits(weight: torch.Tensor) -> np.ndarray:
    """bfloat16 patterns (uint16, round to nearest even) of a float tensor."""
    bits = weight.detach().to(torch.float32).to(torch.bfloat16).view(torch.int16)
    return bits.numpy().view("<u2")


def quantize_int8(weight: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel int8 of a [out, in] weight: returns
    (int8 [out, in], float32 scale [out]) with weight ~= scale[o] * q[o, i]."""
    w = weight.detach().to(torch.float32)
    scale = w.abs().amax(dim=1) / _INT8_MAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.round(w / scale[:, None]).clamp(-_INT8_MAX, _INT8_MAX)
    return q.to(torch.int8).numpy(), scale.numpy().astype("<f4")


def _stored_tensors(name: str, tensor: torch.Tensor, precision: str):
    """(name, little-endian array) pairs a state_dict entry is stored as."""
    if _EXPERT_WEIGHT.search(name) and precision == "bf16":
        return [(name, to_bfloat16_bits(tensor))]
    if _EXPERT_WEIGHT.search(name) and precision == "int8":
        q, scale = quantize_int8(tensor)
        return [(name, q), (name + SCALE_SUFFIX, scale)]
    array = tensor.detach().to(torch.float32).contiguous().numpy()
    return [(name, array.astype("<f4", copy=False))]


def _write_weight_files(config: ModelConfig, state_dict: dict, out_dir: Path,
                        precision: str):
    """Writes model.safetensors and one file per expert, tensors in
    tensor_shapes() order (an int8 weight followed by its scale). Returns the
    manifest's (files, tensors) lists."""
    by_file: dict[str, list] = {}
    for name in tensor_shapes(config):
        by_file.setdefault(file_for_tensor(name), []).extend(
            _stored_tensors(name, state_dict[name], precision))
    files, tensors = [], []
    for path, arrays in by_file.items():
        (out_dir / path).parent.mkdir(exist_ok=True)
        written = write_safetensors(out_dir / path, arrays)
        files.append({"path": path, "sha256": written.sha256,
                      "size_bytes": written.size_bytes})
        tensors += [{"name": name, "dtype": dtype_name(array),
                     "shape": list(array.shape), "file": path,
                     "offset_bytes": written.tensors[name][0],
                     "size_bytes": written.tensors[name][1]}
                    for name, array in arrays]
    order = {name: i for i, name in enumerate(tensor_shapes(config))}
    tensors.sort(key=lambda t: (order[t["name"].removesuffix(SCALE_SUFFIX)],
                                t["name"]))
    return files, tensors


def _manifest_json(value, indent: str = "") -> str:
    """JSON that stays readable for hundreds of tensors: an object or list
    holding only numbers, strings and lists of those is written on one line
    (so one line per file and per tensor entry), anything else is indented."""
    def flat(v):
        return not isinstance(v, (dict, list)) or (
            isinstance(v, list) and not any(isinstance(x, (dict, list)) for x in v))
    children = value.values() if isinstance(value, dict) else value
    if not isinstance(value, (dict, list)) or all(flat(v) for v in children):
        return json.dumps(value)
    inner = indent + "  "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_manifest_json(v, inner)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    items = [inner + _manifest_json(v, inner) for v in value]
    return "[\n" + ",\n".join(items) + f"\n{indent}]"


def load_model_source(model_dir: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(CFG object, state_dict) of an existing float32 model directory."""
    try:
        manifest, tensors = load_model_dir(model_dir)
    except (OSError, ValueError, KeyError) as e:
        raise ExportError(f"cannot read model {model_dir}: {e}") from e
    if manifest.get("precision", "float32") != "float32":
        raise ExportError(f"{model_dir} has {manifest['precision']} experts; "
                          "re-export from a float32 model")
    cfg = {key: manifest[key] for key in _CONFIG_FIELDS if key in manifest}
    dtypes = {t["name"]: t["dtype"] for t in manifest["tensors"]}
    return cfg, {name: torch.from_numpy(array) for name, array
                 in float32_state_dict(tensors, dtypes).items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path,
                        help="CFG.json (architecture, preprocessing, labels, ...); "
                        "required unless --from-model")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", type=Path,
                        help="torch.save(state_dict) with docs/model-spec.md's names")
    source.add_argument("--random-seed", type=int,
                        help="deterministic random weights (tests, benchmarks)")
    source.add_argument("--from-model", type=Path,
                        help="an exported float32 model directory to re-export")
    parser.add_argument("--out", required=True, type=Path,
                        help="model directory to create (absent or empty)")
    parser.add_argument("--expert-dtype", default="float32",
                        choices=list(EXPERT_DTYPES),
                        help="storage of the expert MLP weights (default float32)")
    args = parser.parse_args(argv)
    if (args.config is None) == (args.from_model is None):
        parser.error("give --config, or --from-model without --config")
    try:
        if args.from_model is not None:
            cfg, state_dict = load_model_source(args.from_model)
        else:
            cfg = load_config(args.config)
            if args.weights is not None:
                state_dict = load_weights(args.weights)
            else:
                state_dict = random_state_dict(model_config(cfg), args.random_seed)
        manifest = export_model(cfg, state_dict, args.out,
                                EXPERT_DTYPES[args.expert_dtype], args.random_seed)
    except ExportError as e:
        print(f"export_model: error: {e}", file=sys.stderr)
        return 1
    print(f"export_model: wrote {args.out} ({len(manifest['files'])} files, "
          f"{len(manifest['tensors'])} tensors, {manifest['precision']} experts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
