"""A read-only FUSE mirror of a directory whose reads are slowed down like
slower storage than this machine's disk: each read request waits
--latency_ms (requests in parallel wait in parallel, like a network or
flash device with a deep queue), and with --read_mbps the bytes of all
requests pass one at a time at that rate (like a device with one queue).

Why: on this project's VM a cold 8.4 MB expert file reads in about 7 ms,
so expert loads are bound by memory and CPU, not by I/O, and prefetch has
no I/O wait to hide. Edge boxes keep models on eMMC, SD cards or network
storage; this emulates those with the kernel's real page cache and mmap
path (FUSE), for tools/bench/cache_load_runs.py --storage_latency_ms.

The mirror is mounted with `kernel_cache`: the page cache keeps a file's
pages across opens, as with a real disk (the gateway's read-ahead opens an
expert file, asks for its pages and closes it; the loader opens it again).
To make loads cold, drop the mirror files' pages (posix_fadvise DONTNEED),
as tools/bench/cache_load_runs.py does.

  /usr/bin/python3 -m tools.bench.slow_storage SOURCE MOUNTPOINT --latency_ms 2
  (runs in the foreground until unmounted: umount MOUNTPOINT as root, or
  fusermount -u MOUNTPOINT where installed)

Needs /dev/fuse and Debian's python3-fusepy (tools/setup.sh installs it).
"""
import argparse
import errno
import os
import threading
import time

import fusepy


class SlowMirror(fusepy.Operations):
    def __init__(self, root, latency_s, read_bytes_per_s):
        self.root = os.path.realpath(root)
        self.latency_s = latency_s
        self.read_bytes_per_s = read_bytes_per_s
        self.device = threading.Lock()  # the one queue of --read_mbps
        self.busy_until = 0.0

    def _path(self, path):
        return os.path.join(self.root, path.lstrip("/"))

    def getattr(self, path, fh=None):
        st = os.lstat(self._path(path))
        return {key: getattr(st, key) for key in (
            "st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime",
            "st_nlink", "st_size", "st_uid")}

    def readdir(self, path, fh):
        return [".", "..", *os.listdir(self._path(path))]

    def open(self, path, flags):
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise fusepy.FuseOSError(errno.EROFS)
        return os.open(self._path(path), os.O_RDONLY)

    def release(self, path, fh):
        os.close(fh)

    def read(self, path, size, offset, fh):
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.read_bytes_per_s:
            with self.device:
                start = max(time.monotonic(), self.busy_until)
                done = start + size / self.read_bytes_per_s
                self.busy_until = done
            time.sleep(max(0.0, done - time.monotonic()))
        return os.pread(fh, size, offset)

    def statfs(self, path):
        st = os.statvfs(self._path(path))
        return {key: getattr(st, key) for key in (
            "f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail",
            "f_ffree", "f_files", "f_flag", "f_frsize", "f_namemax")}


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source")
    p.add_argument("mountpoint")
    p.add_argument("--latency_ms", type=float, default=0.0,
                   help="wait of each read request (at most 128 KiB)")
    p.add_argument("--read_mbps", type=float, default=0.0,
                   help="shared read bandwidth in MB/s; 0 = unlimited")
    args = p.parse_args()
    fusepy.FUSE(SlowMirror(args.source, args.latency_ms / 1e3,
                           args.read_mbps * 1e6),
                args.mountpoint, foreground=True, ro=True, nothreads=False,
                kernel_cache=True)


if __name__ == "__main__":
    main()
