#!/usr/bin/python3
"""The shipped default model, served by the real gateway, is as accurate as
PyTorch says it is.

  test_fashion_vmoe_gateway.py EDGE_GATEWAY EDGE_CLIENT [--model DIR]

1. PyTorch: models/fashion-vmoe reloaded through tools/model/vmoe_reference.py,
   on all 10,000 Fashion-MNIST test images, preprocessed as the gateway does
   a 28x28 greyscale PNG (no resize at 28x28): pixels / 255, replicated to 3
   channels, normalised with the manifest's mean/std.
2. The gateway (`--listen_address 127.0.0.1:0 --metrics_address 127.0.0.1:0`;
   the ports are read from its `serving NAME on ADDR port P metrics_port M`
   line) gets every test image twice: as a PNG file (`edge-client classify
   --top_k 1`) and as a normalised float32 tensor (`edge-client infer
   --tensor`), a few client processes at a time so that batches form.
3. Every image must be answered, both gateway accuracies must be within 0.1
   percentage points of PyTorch's, and the gateway must exit 0 on SIGTERM.
"""

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from tools import REPO, fashion_mnist
from tools.model.reference_run import load_reference
from tools.png_writer import write_png

TOLERANCE_POINTS = 0.1
CLIENT_PROCESSES = 4      # concurrent edge-client processes per pass
START_TIMEOUT_S = 120
CALL_TIMEOUT_MS = 60000
SERVING = re.compile(r"serving (\S+) on (\S+) port (\d+) metrics_port (\d+)")


def keep_freed_memory() -> None:
    """glibc: keep freed tensor memory mapped (see tools/demo/train.py);
    page faults would otherwise dominate PyTorch's time in a small VM."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


def gateway_input(images_u8: np.ndarray, manifest: dict) -> np.ndarray:
    """What the gateway computes from a 28x28 greyscale PNG: [N, 3, 28, 28]."""
    mean = np.array(manifest["preprocessing"]["mean"], np.float32)[:, None, None]
    std = np.array(manifest["preprocessing"]["std"], np.float32)[:, None, None]
    grey = images_u8.astype(np.float32) / np.float32(255.0)
    return ((grey[:, None] - mean) / std).astype(np.float32)


@torch.no_grad()
def pytorch_predictions(model_dir: Path, x: np.ndarray) -> np.ndarray:
    model = load_reference(model_dir)
    predictions = []
    for first in range(0, len(x), 500):
        logits, _ = model(torch.from_numpy(x[first:first + 500]))
        predictions.append(logits.argmax(-1).numpy())
    return np.concatenate(predictions)


class Gateway:
    """edge_gateway on 127.0.0.1 port 0; stderr is drained on a thread."""

    def __init__(self, binary: str, model_dir: Path):
        self.process = subprocess.Popen(
            [binary, "--model_dir", str(model_dir),
             "--listen_address", "127.0.0.1:0",
             "--metrics_address", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.serving = threading.Event()
        self.port = self.metrics_port = None
        threading.Thread(target=self._read_stderr, daemon=True).start()
        if not self.serving.wait(START_TIMEOUT_S) or self.port is None:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the gateway did not report serving:\n"
                                 + "".join(self.lines))

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line)
            match = SERVING.search(line)
            if match and not self.serving.is_set():
                self.name = match.group(1)
                self.port, self.metrics_port = int(match.group(3)), int(match.group(4))
                self.serving.set()
        self.serving.set()  # exited before serving: wake the waiter

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


def run_clients(commands: list[list[str]]) -> list[str]:
    """Runs the edge-client commands concurrently; returns their stdouts."""
    processes = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for c in commands]
    outputs = []
    for command, process in zip(commands, processes):
        out, err = process.communicate(timeout=900)
        if process.returncode != 0:
            raise AssertionError(f"{command[:3]} ... exited {process.returncode}:\n"
                                 f"{err}\n{out[-2000:]}")
        outputs.append(out)
    return outputs


def classify_pngs(client: str, target: str, files: list[Path]) -> dict[str, int]:
    """edge-client classify --top_k 1: file name -> top class index."""
    chunks = np.array_split(np.arange(len(files)), CLIENT_PROCESSES)
    outputs = run_clients([
        [client, "classify", "--target", target, "--top_k", "1",
         "--timeout_ms", str(CALL_TIMEOUT_MS)] + [str(files[i]) for i in chunk]
        for chunk in chunks])
    answers = {}
    for out in outputs:
        for line in out.splitlines():
            reply = json.loads(line)
            if "error" in reply:
                raise AssertionError(f"classify failed: {line}")
            # proto3 JSON leaves out a zero index (class 0).
            answers[Path(reply["file"]).name] = int(reply["top"][0].get("index", 0))
    return answers


def infer_tensors(client: str, target: str, x: np.ndarray, work: Path) -> np.ndarray:
    """edge-client infer --tensor shard.npy: logits [N, C] in image order."""
    shards = np.array_split(np.arange(len(x)), CLIENT_PROCESSES)
    commands = []
    for s, shard in enumerate(shards):
        path = work / f"x{s}.npy"
        np.save(path, x[shard])
        commands.append([client, "infer", "--target", target, "--top_k", "1",
                         "--timeout_ms", str(CALL_TIMEOUT_MS), "--tensor", str(path)])
    logits = []
    for shard, out in zip(shards, run_clients(commands)):
        rows = json.loads(out)["logits"]
        if len(rows) != len(shard):
            raise AssertionError(f"infer answered {len(rows)} of {len(shard)} images")
        logits.append(np.array(rows, np.float32))
    return np.concatenate(logits)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gateway")
    parser.add_argument("client")
    parser.add_argument("--model", type=Path, default=REPO / "models" / "fashion-vmoe")
    args = parser.parse_args()
    keep_freed_memory()
    torch.set_num_threads(2)
    started = time.perf_counter()

    manifest = json.loads((args.model / "manifest.json").read_text())
    images, labels = fashion_mnist.load("test")
    labels = labels.astype(np.int64)
    assert len(images) == 10000 and images.shape[1:] == (28, 28)
    assert manifest["architecture"]["image_size"] == 28, \
        "the test assumes no resize (a 28x28 model)"
    x = gateway_input(images, manifest)

    torch_pred = pytorch_predictions(args.model, x)
    torch_acc = float((torch_pred == labels).mean())
    print(f"PyTorch (tools/model/vmoe_reference.py): {100 * torch_acc:.2f}% "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

    with tempfile.TemporaryDirectory(prefix="fashion-vmoe-test-") as tmp:
        work = Path(tmp)
        files = []
        for i, image in enumerate(images):
            files.append(work / f"{i:05d}.png")
            write_png(files[-1], image)
        gateway = Gateway(args.gateway, args.model)
        try:
            assert gateway.name == manifest["name"], gateway.name
            t = time.perf_counter()
            answers = classify_pngs(args.client, gateway.target, files)
            png_seconds = time.perf_counter() - t
            t = time.perf_counter()
            logits = infer_tensors(args.client, gateway.target, x, work)
            tensor_seconds = time.perf_counter() - t
        finally:
            code = gateway.stop()

    missing = [f.name for f in files if f.name not in answers]
    assert not missing, f"{len(missing)} PNG files got no answer, e.g. {missing[:5]}"
    png_pred = np.array([answers[f.name] for f in files])
    png_acc = float((png_pred == labels).mean())
    tensor_pred = logits.argmax(-1)
    tensor_acc = float((tensor_pred == labels).mean())
    print(f"gateway, PNG files (edge-client classify): {100 * png_acc:.2f}% "
          f"({png_seconds:.0f} s; {int((png_pred != torch_pred).sum())} answers "
          f"differ from PyTorch's)")
    print(f"gateway, float32 tensors (edge-client infer): {100 * tensor_acc:.2f}% "
          f"({tensor_seconds:.0f} s; {int((tensor_pred != torch_pred).sum())} "
          f"answers differ from PyTorch's)")
    print(f"total {time.perf_counter() - started:.0f} s; gateway exit code {code}")

    failures = []
    for name, acc in (("PNG", png_acc), ("tensor", tensor_acc)):
        if abs(acc - torch_acc) * 100 > TOLERANCE_POINTS:
            failures.append(f"{name} accuracy {100 * acc:.2f}% is more than "
                            f"{TOLERANCE_POINTS} points from PyTorch's "
                            f"{100 * torch_acc:.2f}%")
    if code != 0:
        failures.append(f"the gateway exited {code} on SIGTERM:\n"
                        + "".join(gateway.lines[-20:]))
    for failure in failures:
        print(f"FAIL: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
