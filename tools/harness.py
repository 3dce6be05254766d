"""Drives the real gateway from Python: starts and stops edge_gateway, runs
edge-loadtest and other commands, generates the gRPC stubs, checks. Shared
by the Python tests (tests/deploy, tests/client, tests/server) and the load
runs of tools/bench; Python 3 standard library only.

A failed check raises TestFailure; each driver's main() turns it into a
"FAIL: ..." line and exit status 1. Processes started here are always
stopped by the caller's `finally` (stop_process), so a failing test leaves
nothing running.
"""

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The gateway's start-up line (server/main.cc): both ports, chosen by the
# kernel when the addresses ask for port 0.
SERVING = re.compile(r"serving \S+ on \S+ port (\d+) metrics_port (\d+)")


class TestFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def free_port():
    """A TCP port free on 127.0.0.1 right now (for programs that cannot be
    told to pick port 0 and report it, like Prometheus)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(binary, model_dir, log_path, extra_args=(), timeout_s=30,
                  omp_threads=1):
    """Starts edge_gateway on 127.0.0.1 (ports 0) and waits for its serving
    line. Returns (process, grpc_port, metrics_port); raises TestFailure,
    with the log, if it exits or stays silent.

    oneDNN gets one OpenMP thread by default: the test models are tiny, and
    OpenMP threads spinning at barriers on a shared 2-core machine (other
    tests, the client) turn into latency spikes of tens of milliseconds.
    Benchmarks pass omp_threads=None to leave OpenMP's default (all cores)."""
    log_path = Path(log_path)
    log = open(log_path, "w")
    process = subprocess.Popen(
        [binary, "--model_dir", str(model_dir),
         "--listen_address", "127.0.0.1:0",
         "--metrics_address", "127.0.0.1:0", *extra_args],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ,
             **({"OMP_NUM_THREADS": str(omp_threads)} if omp_threads else {})})
    log.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        match = SERVING.search(log_path.read_text())
        if match:
            return process, int(match.group(1)), int(match.group(2))
        if process.poll() is not None:
            raise TestFailure(f"gateway exited with {process.returncode}:\n"
                              f"{log_path.read_text()}")
        time.sleep(0.05)
    process.kill()
    process.wait()
    raise TestFailure(f"gateway did not serve within {timeout_s} s:\n"
                      f"{log_path.read_text()}")


def stop_process(process, timeout_s=20):
    """SIGTERM, then SIGKILL after `timeout_s`. Returns the exit status."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def run(args, timeout_s, echo_stdout=True, **kwargs):
    """Runs a command to completion (bounded), echoing it and its output
    (stdout only if `echo_stdout`) so that CTest's log shows what happened.
    Returns the CompletedProcess."""
    result = subprocess.run([str(a) for a in args], capture_output=True,
                            text=True, timeout=timeout_s, **kwargs)
    print(f"$ {' '.join(str(a) for a in args)}\n-> exit {result.returncode}")
    for stream in (result.stdout if echo_stdout else "", result.stderr):
        if stream.strip():
            print(stream.rstrip()[-4000:])
    return result


def run_loadtest(binary, flags, timeout_s, echo_stdout=True):
    """Runs edge-loadtest with `flags` and a temporary --json_out; returns
    its JSON report. A non-zero exit is a TestFailure."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        result = run([binary, *flags, "--json_out", out.name],
                     timeout_s=timeout_s, echo_stdout=echo_stdout)
        check(result.returncode == 0, f"loadtest failed: {result.stderr}")
        return json.loads(Path(out.name).read_text())


def load_gateway_stubs(proto, out_dir):
    """Generates the Python stubs of `proto` (proto/gateway.proto) into
    out_dir with grpc_tools.protoc (Debian's python3-grpc-tools) and imports
    them; returns (gateway_pb2, gateway_pb2_grpc). Both are registered under
    their top-level names, the name by which gateway_pb2_grpc imports
    gateway_pb2."""
    proto = Path(proto).resolve()
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{proto.parent}",
         f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", str(proto)],
        check=True)
    modules = []
    for name in (f"{proto.stem}_pb2", f"{proto.stem}_pb2_grpc"):
        spec = importlib.util.spec_from_file_location(name,
                                                      Path(out_dir) / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules.append(module)
    return tuple(modules)


def main_wrapper(body):
    """Runs body(); returns the process exit status."""
    try:
        body()
    except TestFailure as failure:
        print(f"FAIL: {failure}")
        return 1
    print("PASS")
    return 0
