# The README's two commands: `make demo` and `make test`. Each installs what
# it needs (tools/setup.sh, idempotent), builds, and runs.
BUILD ?= build
JOBS ?= $(shell nproc)
PYTHON := /usr/bin/python3
DEMO_MODEL ?= models/vmoe-tiny-224-random

.PHONY: setup build test demo clean format

setup:
	bash tools/setup.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: setup $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Random-weights vmoe-tiny-224 until the trained demo model exists.
$(DEMO_MODEL)/manifest.json:
	$(PYTHON) tools/export_model.py --config tools/configs/vmoe-tiny-224.json \
	  --random-seed 1 --out $(DEMO_MODEL)

demo: build $(DEMO_MODEL)/manifest.json
	$(BUILD)/engine/engine_bench --model $(DEMO_MODEL) --batch 1 --seconds 3
	$(BUILD)/engine/engine_bench --model $(DEMO_MODEL) --batch 16 --seconds 3

format:
	clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD)
