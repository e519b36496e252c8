#!/usr/bin/env bash
# Create the virtual environment and install the course: the CPU build of torch on a machine
# without an NVIDIA GPU (the CUDA build is several GB we would never use), the CUDA build with
# the `gpu` extras where `nvidia-smi` sees a GPU.
set -euo pipefail
venv=${1:-.venv}
torch_version=${DOJO_TORCH_VERSION:-2.13.0}

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip)
"${pip[@]}" install --quiet --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "setup: NVIDIA GPU found, installing the CUDA build of torch $torch_version and the gpu extras"
  "${pip[@]}" install --quiet "torch==$torch_version"
  extras="dev,gpu"
else
  echo "setup: no GPU, installing the CPU build of torch $torch_version"
  # Elsewhere, set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu to get the CPU wheel.
  "${pip[@]}" install --quiet ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$torch_version"
  extras="dev"
fi
"${pip[@]}" install --quiet -e ".[$extras]"
"$venv/bin/python" -c "import torch, dojo; print('setup: torch', torch.__version__, '| profile', dojo.profile().name)"
