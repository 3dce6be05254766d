"""The V-MoE model: the PyTorch reference of docs/model-spec.md, the model
directory format of docs/model-format.md, its exporter and reference runs."""

from pathlib import Path

# The reference configurations (docs/model-spec.md, "Reference
# configurations") and the tests' small variants of them.
CONFIGS = Path(__file__).resolve().parent / "configs"
