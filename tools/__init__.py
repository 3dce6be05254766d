"""The project's Python tools, one subpackage per role (tools/README.md):

  model/   the PyTorch reference of docs/model-spec.md, the model format and
           its exporter, reference runs and the precision report
  demo/    the shipped demo model (models/fashion-vmoe): its training, model
           card and sample images, and the demo script
  bench/   benchmarks and load runs against the engine and the gateway
  cpp/     (C++, not a Python package) what edge-loadtest and cache/sim/
           share: scene model, random numbers, text files, gnuplot

and the modules they and tests/ share: harness (starts the gateway and
edge-loadtest, checks), fashion_mnist (the dataset), png_writer.

Run the scripts as modules from the repository root, e.g.
`/usr/bin/python3 -m tools.model.export_model --help`; the tests import
this package with the repository root on PYTHONPATH.
"""

from pathlib import Path

# The repository root: default locations of build/, models/ and proto/.
REPO = Path(__file__).resolve().parent.parent
