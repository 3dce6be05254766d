#!/usr/bin/env bash
# Installs every Debian 12 package the gateway needs to build, test and run its
# demo. Idempotent: packages already present are skipped by apt-get, and the
# package index is refreshed only when something is missing.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git clang-format
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libdnnl-dev ocl-icd-opencl-dev
  prometheus-cpp-dev libabsl-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libturbojpeg0-dev libspng-dev
  python3 python3-torch python3-numpy
  prometheus
  dataset-fashion-mnist
  gnuplot-nox openssl yamllint
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing packages (${missing[*]}); run as root or install them" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
