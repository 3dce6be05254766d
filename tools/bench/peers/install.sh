#!/usr/bin/env bash
# Installs the ONNX Runtime peer's npm packages (package-lock.json beside this
# script) into DEST/node_modules with `npm ci`. Idempotent: skipped when DEST
# already holds node_modules installed from the same lock file.
#
#   tools/bench/peers/install.sh [DEST]   DEST defaults to tools/bench/peers
#
# Called by tools/setup.sh (DEST = tools/bench/peers, for
# tools/bench/benchmark_peers.py) and by the tools.peers_npm CTest fixture
# (DEST in the build tree), the way tests/deploy installs kubernetes-models.
set -euo pipefail

source_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="$(mkdir -p "${1:-$source_dir}" && cd "${1:-$source_dir}" && pwd)"
stamp="$dest/node_modules/.installed-package-lock.json"

if [ -f "$stamp" ] && cmp -s "$source_dir/package-lock.json" "$stamp"; then
  echo "peers: npm packages present in $dest"
  exit 0
fi
if [ "$dest" != "$source_dir" ]; then
  cp "$source_dir/package.json" "$source_dir/package-lock.json" "$dest/"
fi
# onnxruntime-node bundles the CPU runtime in its npm tarball; its postinstall
# script would also download the CUDA providers from NuGet, which we do not
# use (and which is not reachable from every build machine): skip it.
(cd "$dest" && ONNXRUNTIME_NODE_INSTALL=skip \
  npm ci --no-audit --no-fund --loglevel=error)
cp "$source_dir/package-lock.json" "$stamp"
echo "peers: installed npm packages into $dest"
