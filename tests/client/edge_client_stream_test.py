#!/usr/bin/python3
"""edge-client stream against a real gateway on 127.0.0.1 whose connections
age out after 1 s (max_connection_age_ms: GOAWAY) and streams after 2 s
(max_stream_age_ms: the gateway answers the frames it read and ends the
stream UNAVAILABLE, saying why): the client reopens the stream, sends the
unanswered frames again and gets every frame answered exactly once; its
summary counts the reopened streams and names the status that ended them.
An unreachable gateway fails at once (exit 1, nothing reopened), and a bad
--fps exits 2 with a message."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tools import harness


def summary_of(stdout):
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    harness.check(lines and "summary" in lines[-1], f"no summary line:\n{stdout}")
    return lines[-1]["summary"], lines[:-1]


def check_reopens(flags, work):
    proc, port, _ = harness.start_gateway(
        flags.gateway, flags.model_dir, work / "gateway.log",
        ["--max_connection_age_ms", "1000", "--max_stream_age_ms", "2000"])
    try:
        # 28 frames at 4 fps: 7 s, three stream ages.
        result = subprocess.run(
            [flags.client, "stream", "--target", f"127.0.0.1:{port}",
             "--dir", flags.samples, "--fps", "4", "--frames", "28",
             "--loop", "--timeout_ms", "10000"],
            capture_output=True, text=True, timeout=60)
    finally:
        harness.stop_process(proc)
    harness.check(
        result.returncode == 0,
        f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}")
    summary, answers = summary_of(result.stdout)
    harness.check(summary["streams_reopened"] >= 2,
                  f"fewer than 2 streams reopened: {summary}")
    reasons = summary["reopened_by"]
    harness.check(
        sum(reasons.values()) == summary["streams_reopened"] and
        all(r.startswith("UNAVAILABLE: the stream reached its maximum age")
            and "reopen the stream" in r for r in reasons),
        f"streams ended without the gateway's reason: {reasons}")
    harness.check(summary["sent"] == 28 and summary["answered"] == 28 and
                  summary["unanswered"] == 0 and summary["unexpected"] == 0 and
                  not summary["errors"],
                  f"not every frame answered once: {summary}")
    ids = sorted(a["request_id"] for a in answers)
    harness.check(len(set(ids)) == 28, f"answers: {ids}")


def check_bad_fps(flags):
    result = subprocess.run(
        [flags.client, "stream", "--target", "127.0.0.1:1", "--dir",
         flags.samples, "--fps", "0"], capture_output=True, text=True,
        timeout=30)
    harness.check(
        result.returncode == 2 and "--fps" in result.stderr,
        f"--fps 0: exit {result.returncode}, stderr {result.stderr!r}")


def check_unreachable(flags):
    result = subprocess.run(
        [flags.client, "stream", "--target", "127.0.0.1:1", "--dir",
         flags.samples, "--fps", "2", "--timeout_ms", "3000"],
        capture_output=True, text=True, timeout=30)
    summary, _ = summary_of(result.stdout)
    harness.check(result.returncode == 1 and summary["streams_reopened"] == 0 and
                  summary["stream_status"]["code"] == "UNAVAILABLE" and
                  summary["seconds"] < 2,
                  f"unreachable: exit {result.returncode}, {summary}")


def main():
    parser = argparse.ArgumentParser()
    for name in ("gateway", "client", "model_dir", "samples", "work_dir"):
        parser.add_argument(f"--{name}", required=True)
    flags = parser.parse_args()
    work = Path(flags.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    check_bad_fps(flags)
    check_unreachable(flags)
    check_reopens(flags, work)
    print("PASS")


if __name__ == "__main__":
    sys.exit(harness.main_wrapper(main))
