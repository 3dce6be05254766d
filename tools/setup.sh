#!/usr/bin/env bash
# Installs every Debian 12 package the gateway needs to build, test, run its
# demo and benchmark it, and the benchmark's npm packages. Idempotent:
# packages already present are skipped by apt-get, the package index is
# refreshed only when something is missing, and npm runs only when its lock
# file changed.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git clang-format
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libdnnl-dev ocl-icd-opencl-dev
  prometheus-cpp-dev libabsl-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libturbojpeg0-dev libspng-dev
  python3 python3-torch python3-numpy python3-yaml python3-fusepy
  python3-grpcio python3-grpc-tools
  prometheus
  dataset-fashion-mnist
  gnuplot-nox openssl yamllint
  docker-compose nodejs
)

# Packages whose command some machines already have from elsewhere, where
# installing the Debian package would clash: installed only when the
# command is missing. kubernetes-client ships /usr/bin/kubectl, as do other
# kubectl packages (Google Cloud's); NodeSource's nodejs bundles npm and
# conflicts with Debian's npm.
declare -A COMMAND_PACKAGES=([kubectl]=kubernetes-client [npm]=npm)
for command in "${!COMMAND_PACKAGES[@]}"; do
  if ! command -v "$command" >/dev/null 2>&1; then
    PACKAGES+=("${COMMAND_PACKAGES[$command]}")
  fi
done

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

install_missing_packages() {
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all ${#PACKAGES[@]} packages present"
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages (${missing[*]}); run as root or install them" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}
install_missing_packages

# npm packages, from committed lock files: onnxruntime-node for the peer
# benchmark (tools/bench/benchmark_peers.py). Skipped when already installed
# from the same lock file.
bash "$(dirname "${BASH_SOURCE[0]}")/bench/peers/install.sh"
