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
  python3 python3-torch python3-numpy python3-yaml
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
