#!/usr/bin/env bash
# Installs what building the exchange needs on a fresh Debian 12 machine, and nothing more.
# Idempotent: quiet and fast when everything is already there.
#
#  - Debian packages for building Aeron's C sources through rusteron (bindgen needs libclang):
#      libclang1-14 libclang-common-14-dev libbsd-dev uuid-dev
#  - cmake >= 3.30 (Debian 12 ships 3.25, too old for Aeron 1.54): installed from PyPI into a
#    project-local virtual environment at .tools/venv; the Makefile puts .tools/venv/bin on PATH.
#  - simplefix (PyPI) into the same virtual environment: the third-party FIX codec of the
#    interoperability client gateway/tests/interop/simplefix_client.py (gateway/tests/interop.rs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.tools/venv"
apt_packages=(libclang1-14 libclang-common-14-dev libbsd-dev uuid-dev)
cmake_min="3.30"

say() { printf 'setup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

missing=()
for package in "${apt_packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get: install them by hand"
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then sudo_cmd=(sudo); else die "missing packages ${missing[*]}: run as root or install them by hand"; fi
  else
    sudo_cmd=()
  fi
  say "installing Debian packages: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cmake_ok() {
  local bin=$1 version
  [ -x "$bin" ] || return 1
  version=$("$bin" --version 2>/dev/null | head -n1 | awk '{print $3}')
  [ -n "$version" ] || return 1
  [ "$(printf '%s\n%s\n' "$cmake_min" "$version" | sort -V | head -n1)" = "$cmake_min" ]
}

if ! cmake_ok "$venv/bin/cmake"; then
  command -v python3 >/dev/null || die "python3 is needed to install cmake >= $cmake_min"
  say "installing cmake >= $cmake_min into $venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install -q --disable-pip-version-check "cmake>=$cmake_min" || die "pip install cmake failed"
  cmake_ok "$venv/bin/cmake" || die "cmake in $venv is still older than $cmake_min"
fi

if ! "$venv/bin/python3" -c "import simplefix" >/dev/null 2>&1; then
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  say "installing simplefix into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "simplefix>=1.0.17,<2" || die "pip install simplefix failed"
  "$venv/bin/python3" -c "import simplefix" >/dev/null 2>&1 || die "simplefix is still not importable from $venv"
fi
