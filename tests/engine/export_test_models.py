#!/usr/bin/python3
"""CTest fixture: exports the random-weight models the engine tests run on.

  export_test_models.py OUT_DIR

Writes OUT_DIR/<config name>/ for each config below with seed 1. A model
whose manifest already exists is kept (exports are deterministic), so
re-running the suite does not pay for the ~600 MB vmoe-s32-e32 again.
"""

import shutil
import sys
from pathlib import Path

from tools.model import CONFIGS
from tools.model.export_model import (export_model, load_config, model_config,
                                      random_state_dict)

# (directory, config, expert precision).
# tiny-image / tiny-token: failure isolation, batch independence, bf16.
# tiny-image-bf16 / -int8: the same weights with reduced-precision experts.
# vmoe-s32-e32: docs/model-spec.md's many-experts configuration, for the
# budget test.
MODELS = (("tiny-image", "tiny-image", "float32"),
          ("tiny-image-bf16", "tiny-image", "bf16"),
          ("tiny-image-int8", "tiny-image", "int8"),
          ("tiny-token", "tiny-token", "float32"),
          ("vmoe-s32-e32", "vmoe-s32-e32", "float32"))


def main() -> int:
    out = Path(sys.argv[1])
    for directory, config, precision in MODELS:
        target = out / directory
        if (target / "manifest.json").exists():
            continue
        shutil.rmtree(target, ignore_errors=True)
        cfg = load_config(CONFIGS / f"{config}.json")
        export_model(cfg, random_state_dict(model_config(cfg), seed=1), target,
                     precision, random_seed=1)
        print(f"exported {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
