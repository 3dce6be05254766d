#!/usr/bin/python3
"""loadtest.smoke: edge-loadtest against the real gateway, end to end.

  loadtest_smoke_test.py --gateway BIN --loadtest BIN --model_dir DIR \
      --work_dir DIR

Starts edge_gateway on 127.0.0.1 with ports 0 (both ports are read from its
"serving ... port P metrics_port M" log line), then checks:
  - bad command lines exit 2 without sending (non-loopback target, unknown
    flag, out-of-range value);
  - stream mode (4 cameras x 20 fps, 3 s, synthetic scenes with drift) and
    unary mode (8 clients, 2 s) exit 0, and their JSON reports account for
    every request (answered > 0, unanswered == 0, sent = OK + errors +
    unanswered) and carry the server's counters;
  - the per-second CSV and, if gnuplot is installed, both PNG plots exist;
  - SIGTERM stops the gateway with exit status 0;
  - against a second gateway whose connections age out after 1 s (GOAWAY)
    and streams after 2 s (max_stream_age_ms), an 8 s stream run reopens
    each camera's stream, sends its unanswered frames again and leaves none
    unanswered.
Standard library and tools.harness (whose start_gateway gives the gateway one
OpenMP thread, as the other tests do); exits non-zero with a message on the
first failure.
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tools import harness
from tools.harness import check

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_loadtest(binary, args, timeout_s):
    result = subprocess.run([binary] + args, capture_output=True, text=True,
                            timeout=timeout_s)
    print(f"$ edge-loadtest {' '.join(args)}\n-> exit {result.returncode}\n"
          f"{result.stdout}{result.stderr}")
    return result


def check_bad_flags(binary):
    for args, needle in (
            (["--target", "10.1.2.3:50051"], "loopback"),
            (["--target", "example.com:50051"], "loopback"),
            (["--no_such_flag", "1"], "unknown flag"),
            (["--cameras", "0"], "--cameras"),
            (["--warmup_s", "5", "--duration_s", "2"], "--warmup_s")):
        result = run_loadtest(binary, args, timeout_s=10)
        check(result.returncode == 2, f"{args}: exit {result.returncode}, want 2")
        check(needle in result.stderr, f"{args}: stderr lacks '{needle}'")


def check_report(json_path, label):
    report = json.loads(json_path.read_text())
    check(report["answered"] > 0, f"{label}: nothing answered")
    check(report["unanswered"] == 0, f"{label}: {report['unanswered']} unanswered")
    check(report["sent"] == report["answered_ok"] + report["answered_error"]
          + report["unanswered"], f"{label}: requests not accounted for")
    check(report["answered_ok"] > 0, f"{label}: no OK answer")
    check(report["latency_ms"]["count"] > 0, f"{label}: no latency sample")
    server = report["server"]
    check(server is not None, f"{label}: server counters not scraped: "
          f"{report['server_note']}")
    check(server["batches"] > 0, f"{label}: server ran no batches")
    return report


def check_outputs(prefix, csv_path, label):
    lines = csv_path.read_text().splitlines()
    check(lines[0] == "time_s,sent,answered,p50_ms,p99_ms,errors",
          f"{label}: CSV header {lines[0]!r}")
    check(len(lines) >= 3, f"{label}: CSV has {len(lines) - 1} rows")
    if shutil.which("gnuplot") is None:
        print(f"{label}: gnuplot not installed; plots not checked")
        return
    for suffix in ("latency-over-time.png", "latency-cdf.png"):
        png = Path(f"{prefix}-{suffix}")
        check(png.exists(), f"{label}: {png} missing")
        check(png.read_bytes()[:8] == PNG_MAGIC, f"{label}: {png} is not PNG")


def run_mode(binary, work, port, metrics_port, label, mode_args, seconds):
    json_path = work / f"{label}.json"
    csv_path = work / f"{label}-per-second.csv"
    prefix = work / label
    args = mode_args + [
        "--duration_s", str(seconds), "--warmup_s", "0.5",
        "--target", f"127.0.0.1:{port}", "--metrics_port", str(metrics_port),
        "--timeout_ms", "5000", "--json_out", str(json_path),
        "--per_second_out", str(csv_path), "--plot_prefix", str(prefix)]
    result = run_loadtest(binary, args, timeout_s=seconds + 12)
    check(result.returncode == 0, f"{label}: exit {result.returncode}, want 0")
    report = check_report(json_path, label)
    check_outputs(prefix, csv_path, label)
    return report


def check_streams_reopen(flags, work):
    """Streams that age out end; the loadtest reopens them."""
    gateway, port, metrics_port = harness.start_gateway(
        flags.gateway, flags.model_dir, work / "gateway-age.log",
        ["--max_connection_age_ms", "1000", "--max_stream_age_ms", "2000"])
    try:
        json_path = work / "reopen.json"
        result = run_loadtest(flags.loadtest, [
            "--mode", "stream", "--cameras", "2", "--fps", "5",
            "--duration_s", "8", "--warmup_s", "1",
            "--target", f"127.0.0.1:{port}", "--metrics_port",
            str(metrics_port), "--json_out", str(json_path)], timeout_s=40)
    finally:
        harness.stop_process(gateway)
    check(result.returncode == 0, f"reopen: exit {result.returncode}, want 0")
    report = check_report(json_path, "reopen")
    check(report["streams_reopened"] >= 2,
          f"reopen: {report['streams_reopened']} streams reopened, want >= 2")
    check(not report["stream_failures"],
          f"reopen: stream failures {report['stream_failures']}")
    check(report["unexpected_answers"] == 0,
          f"reopen: {report['unexpected_answers']} answers to frames already "
          "answered or never sent")


def main():
    parser = argparse.ArgumentParser()
    for name in ("gateway", "loadtest", "model_dir", "work_dir"):
        parser.add_argument(f"--{name}", required=True)
    flags = parser.parse_args()
    work = Path(flags.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)

    check_bad_flags(flags.loadtest)
    gateway, port, metrics_port = harness.start_gateway(
        flags.gateway, flags.model_dir, work / "gateway.log")
    try:
        stream = run_mode(
            flags.loadtest, work, port, metrics_port, "stream",
            ["--mode", "stream", "--cameras", "4", "--fps", "20",
             "--scenes", "16", "--drift_period_s", "1", "--seed", "7"], 3)
        check(stream["distinct_routes"] >= 2,
              "stream: every scene took the same experts")
        run_mode(flags.loadtest, work, port, metrics_port, "unary",
                 ["--mode", "unary", "--concurrency", "8"], 2)
    finally:
        code = harness.stop_process(gateway)
    check(code == 0, f"gateway exited {code} after SIGTERM, want 0")
    check_streams_reopen(flags, work)


if __name__ == "__main__":
    sys.exit(harness.main_wrapper(main))
