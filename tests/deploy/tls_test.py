#!/usr/bin/python3
"""deploy.tls: gRPC over TLS and mutual TLS, end to end.

  tls_test.py --gateway BIN --client BIN --model_dir DIR --cert_script SH \
      --sample PNG --work_dir DIR

Makes two test PKIs with deploy/tls/make-test-certs.sh (the real one and a
stranger's), then:
  start-up  an unreadable certificate and a key that is not the
            certificate's stop the gateway (exit 2) with a message naming
            the file;
  TLS       a client trusting the CA is served (health, classify); a
            plaintext client and a client trusting another CA are refused;
  mTLS      a client with a certificate the CA signed is served; clients
            without a certificate, with the stranger's, or in plaintext are
            refused.
"Refused" means edge-client exits 1 having got no answer (UNAVAILABLE: the
handshake failed). Every call has a 3 s deadline.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from tools.harness import (check, main_wrapper, run, start_gateway,
                            stop_process)

CALL_TIMEOUT_MS = "3000"


def make_pki(script, out):
    result = run(["bash", script, out], timeout_s=60)
    check(result.returncode == 0, f"{script} {out} failed")
    for name in ("ca.crt", "server.crt", "server.key", "client.crt",
                 "client.key"):
        check((Path(out) / name).is_file(), f"{script} did not write {name}")


class Client:
    """edge-client against one gateway port."""

    def __init__(self, binary, port, sample):
        self.binary, self.sample = binary, sample
        self.target = f"127.0.0.1:{port}"

    def health(self, *tls):
        return run([self.binary, "health", "--target", self.target,
                    "--timeout_ms", CALL_TIMEOUT_MS, *tls], timeout_s=30)

    def classify(self, *tls):
        return run([self.binary, "classify", "--target", self.target,
                    "--timeout_ms", CALL_TIMEOUT_MS, "--top_k", "1", *tls,
                    self.sample], timeout_s=30)

    def expect_served(self, label, *tls):
        health = self.health(*tls)
        check(health.returncode == 0 and health.stdout.strip() == "SERVING",
              f"{label}: health should be SERVING")
        classify = self.classify(*tls)
        check(classify.returncode == 0, f"{label}: classify failed")
        answer = json.loads(classify.stdout.strip().splitlines()[0])
        check(answer.get("top"), f"{label}: classify answer has no classes")

    def expect_refused(self, label, *tls):
        health = self.health(*tls)
        check(health.returncode == 1 and "UNAVAILABLE" in health.stderr,
              f"{label}: should be refused (exit 1, UNAVAILABLE), got exit "
              f"{health.returncode}")


def check_startup_errors(args, pki, work):
    cases = (
        (["--tls_cert_file", str(pki / "absent.crt"),
          "--tls_key_file", str(pki / "server.key")],
         [str(pki / "absent.crt"), "tls_cert_file"]),
        (["--tls_cert_file", str(pki / "server.crt"),
          "--tls_key_file", str(pki / "client.key")],
         [str(pki / "client.key"), "is not the key of"]),
    )
    for flags, needles in cases:
        result = run([args.gateway, "--model_dir", args.model_dir,
                      "--listen_address", "127.0.0.1:0",
                      "--metrics_address", "", *flags], timeout_s=30)
        check(result.returncode == 2,
              f"{flags}: exit {result.returncode}, want 2")
        for needle in needles:
            check(needle in result.stderr,
                  f"{flags}: start-up error does not say {needle!r}")


def serve(args, work, name, flags):
    """Starts a TLS gateway; returns (process, Client)."""
    process, port, _ = start_gateway(args.gateway, args.model_dir,
                                     work / f"{name}.log", flags)
    return process, Client(args.client, port, args.sample)


def test(args):
    work = Path(args.work_dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    pki, stranger = work / "pki", work / "stranger"
    make_pki(args.cert_script, pki)
    make_pki(args.cert_script, stranger)
    check_startup_errors(args, pki, work)

    server_flags = ["--tls_cert_file", str(pki / "server.crt"),
                    "--tls_key_file", str(pki / "server.key")]
    trust = ["--tls_ca", str(pki / "ca.crt")]
    client_cert = ["--tls_cert", str(pki / "client.crt"),
                   "--tls_key", str(pki / "client.key")]

    process = None
    try:
        process, client = serve(args, work, "tls", server_flags)
        client.expect_served("TLS, client trusts the CA", *trust)
        client.expect_refused("TLS, plaintext client")
        client.expect_refused("TLS, client trusts another CA",
                              "--tls_ca", str(stranger / "ca.crt"))
        check(stop_process(process) == 0, "TLS gateway: exit status")

        process, client = serve(
            args, work, "mtls",
            server_flags + ["--tls_client_ca_file", str(pki / "ca.crt")])
        client.expect_served("mTLS, client certificate", *trust, *client_cert)
        client.expect_refused("mTLS, no client certificate", *trust)
        client.expect_refused(
            "mTLS, certificate of another CA", *trust,
            "--tls_cert", str(stranger / "client.crt"),
            "--tls_key", str(stranger / "client.key"))
        client.expect_refused("mTLS, plaintext client")
        check(stop_process(process) == 0, "mTLS gateway: exit status")
        process = None
    finally:
        stop_process(process)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for flag in ("gateway", "client", "model_dir", "cert_script", "sample",
                 "work_dir"):
        parser.add_argument(f"--{flag}", required=True)
    args = parser.parse_args()
    return main_wrapper(lambda: test(args))


if __name__ == "__main__":
    sys.exit(main())
