"""Latency of the real gateway on cores shared with a busy neighbour.

For each engine wait setting (--settings: the gateway's default, OpenMP's
own default via --engine_spin_count=-1, OMP_WAIT_POLICY=passive, ...) and
each model: starts edge_gateway on 127.0.0.1, optionally starts one
CPU-bound neighbour process (a busy loop, as a camera agent or an update
unpacking next to the gateway would be), sends --frames frames one at a
time --interval_ms apart with a plain grpcio client, and prints P50/P99 of
the client-side latency and the gateway's own compute time.

    /usr/bin/python3 -m tools.bench.shared_cores_run --gateway build/server/edge_gateway \\
        --model models/fashion-vmoe --model models/vmoe-tiny-224-random

Figures: BENCHMARKS.md, "Shared cores". Loopback only; every process it
starts is stopped before it exits.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools import REPO, harness

# name -> (extra gateway flags, extra environment); "spin-N" sets
# --engine_spin_count=N.
SETTINGS = {
    "default": ([], {}),
    "openmp-default": (["--engine_spin_count=-1"], {}),
    "passive": ([], {"OMP_WAIT_POLICY": "passive"}),
}


def setting_of(name):
    """SETTINGS[name], or "spin-N": --engine_spin_count=N."""
    if name.startswith("spin-"):
        return [f"--engine_spin_count={int(name[5:])}"], {}
    return SETTINGS[name]


def start_gateway(binary, model, flags, env):
    proc = subprocess.Popen(
        [binary, f"--model_dir={model}", "--listen_address=127.0.0.1:0",
         "--metrics_address=127.0.0.1:0", *flags],
        stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    deadline = time.time() + 120
    log = ""
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        log += line
        m = harness.SERVING.search(line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise RuntimeError(f"gateway did not start:\n{log}")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def measure(pb, pbg, port, frame, frames, interval_ms):
    import grpc
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pbg.InferenceGatewayStub(channel)
    latency, compute = [], []
    for i in range(frames + 5):
        start = time.perf_counter()
        r = stub.Classify(pb.ClassifyRequest(request_id=str(i), encoded=frame),
                          timeout=30)
        if i >= 5:  # the first frames warm the connection
            latency.append((time.perf_counter() - start) * 1e3)
            compute.append(r.timing.compute_us / 1e3)
        time.sleep(interval_ms / 1e3)
    channel.close()
    return {"p50_ms": round(percentile(latency, 0.5), 2),
            "p99_ms": round(percentile(latency, 0.99), 2),
            "compute_p50_ms": round(percentile(compute, 0.5), 2),
            "compute_p99_ms": round(percentile(compute, 0.99), 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateway", default=str(REPO / "build/server/edge_gateway"))
    parser.add_argument("--model", action="append", default=[])
    parser.add_argument("--settings", default="default,openmp-default,passive")
    parser.add_argument("--frame", default=str(REPO / "models/samples/0002-trouser.png"))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--interval_ms", type=float, default=50)
    parser.add_argument("--neighbour", choices=["busy", "none", "both"], default="both")
    parser.add_argument("--json_out", default="")
    args = parser.parse_args()
    models = args.model or [str(REPO / "models/fashion-vmoe")]
    pb, pbg = harness.load_gateway_stubs(REPO / "proto" / "gateway.proto",
                                         tempfile.mkdtemp(prefix="edge-stubs-"))
    frame = Path(args.frame).read_bytes()
    neighbours = ["none", "busy"] if args.neighbour == "both" else [args.neighbour]
    results = []
    for model in models:
        for setting in args.settings.split(","):
            flags, env = setting_of(setting)
            for neighbour in neighbours:
                gateway, port = start_gateway(args.gateway, model, flags, env)
                busy = None
                try:
                    if neighbour == "busy":
                        busy = subprocess.Popen(
                            [sys.executable, "-c", "while True: pass"])
                        time.sleep(0.5)
                    row = measure(pb, pbg, port, frame, args.frames,
                                  args.interval_ms)
                finally:
                    if busy is not None:
                        busy.kill()
                        busy.wait()
                    stop(gateway)
                row.update(model=Path(model).name, setting=setting,
                           neighbour=neighbour)
                results.append(row)
                print(f"{row['model']:24} {setting:15} neighbour={neighbour:5} "
                      f"P50 {row['p50_ms']:7.2f} ms  P99 {row['p99_ms']:7.2f} ms"
                      f"  (compute P50 {row['compute_p50_ms']:.2f}, P99 "
                      f"{row['compute_p99_ms']:.2f} ms)", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
