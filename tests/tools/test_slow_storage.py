#!/usr/bin/python3
"""tools/bench/slow_storage.py: the FUSE mirror serves the source's bytes
(read and mmap, as the gateway maps expert files), refuses writes, and a read
waits at least the configured latency. Skipped where FUSE cannot be
mounted (no /dev/fuse, not root, no fusepy)."""

import mmap
import os
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path


def can_mount():
    try:
        import fusepy  # noqa: F401
    except ImportError:
        return False
    return os.path.exists("/dev/fuse") and os.geteuid() == 0


@unittest.skipUnless(can_mount(), "FUSE cannot be mounted here")
class SlowStorageTest(unittest.TestCase):
    LATENCY_MS = 20

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        root = Path(self.tmp.name)
        self.source, self.mount = root / "source", root / "mount"
        (self.source / "experts").mkdir(parents=True)
        self.mount.mkdir()
        self.data = os.urandom(3 * 1024 * 1024 + 123)
        (self.source / "experts" / "e.bin").write_bytes(self.data)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tools.bench.slow_storage",
             str(self.source), str(self.mount),
             "--latency_ms", str(self.LATENCY_MS)])
        deadline = time.monotonic() + 10
        while not (self.mount / "experts").exists():
            self.assertIsNone(self.proc.poll(), "slow_storage.py exited")
            self.assertLess(time.monotonic(), deadline, "no mount in 10 s")
            time.sleep(0.05)

    def tearDown(self):
        subprocess.run(["umount", str(self.mount)], check=False)
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.tmp.cleanup()

    def test_serves_the_source_bytes_slowly(self):
        path = self.mount / "experts" / "e.bin"
        start = time.monotonic()
        self.assertEqual(path.read_bytes(), self.data)
        self.assertGreaterEqual(time.monotonic() - start,
                                self.LATENCY_MS / 1e3)
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0,
                                              prot=mmap.PROT_READ) as m:
            self.assertEqual(m[:], self.data)
        self.assertEqual(sorted(os.listdir(self.mount)), ["experts"])

    def test_refuses_writes(self):
        with self.assertRaises(OSError):
            open(self.mount / "experts" / "e.bin", "r+b")
        with self.assertRaises(OSError):
            (self.mount / "new").write_bytes(b"x")


if __name__ == "__main__":
    unittest.main()
