#!/usr/bin/env bash
# Installs sgt-cpp's build dependencies from Debian's packages, only those that are missing.
# Idempotent: when everything is installed it changes nothing and runs no apt-get.
set -euo pipefail

packages=(cmake g++ make libeigen3-dev libxsimd-dev nlohmann-json3-dev doctest-dev libbenchmark-dev
          libonig-dev libutf8proc-dev libcli11-dev libcpp-httplib-dev)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all dependencies present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
  else
    echo "install_deps: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
  fi
fi
echo "install_deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
