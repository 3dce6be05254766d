# The README's two commands: `make demo` and `make test`. Each installs what
# it needs (tools/setup.sh, idempotent), builds, and runs.
BUILD ?= build
JOBS ?= $(shell nproc)
PYTHON := /usr/bin/python3
DEMO_MODEL ?= models/fashion-vmoe

.PHONY: setup build test demo clean format

setup:
	bash tools/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The trained default model is committed (models/fashion-vmoe, written by
# tools/demo/train.py); a random-weights vmoe-tiny-224 for benchmarks:
models/vmoe-tiny-224-random/manifest.json:
	$(PYTHON) -m tools.model.export_model \
	  --config tools/model/configs/vmoe-tiny-224.json \
	  --random-seed 1 --out models/vmoe-tiny-224-random

# docs/model-spec.md's many-expert configuration (64 experts, ~537 MB of
# them), for the expert cache's load runs (tools/bench/cache_load_runs.py):
models/vmoe-s32-e32-random/manifest.json:
	$(PYTHON) -m tools.model.export_model \
	  --config tools/model/configs/vmoe-s32-e32.json \
	  --random-seed 1 --out models/vmoe-s32-e32-random

# Serves the default model, classifies models/samples/*.png with
# edge-client, then keeps serving until Ctrl-C.
demo: build $(DEMO_MODEL)/manifest.json
	BUILD=$(BUILD) tools/demo/demo.sh $(DEMO_MODEL)

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)
