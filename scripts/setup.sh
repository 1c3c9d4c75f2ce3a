#!/usr/bin/env bash
# Create .venv (once) and install s3prl-dd into it.
#   CPU machine (no nvidia-smi): the CPU build of torch 2.13.0, then the package.
#   GPU machine: your CUDA torch/torchaudio are kept if present, else pip's default CUDA build.
#   --test also installs pytest. The report extra (matplotlib) is always installed.
#   The pretrained upstreams (-u ge2e, -u wakehubert) need onnxruntime + onnx (the [pretrained]
#   extra) and two packages whose files hold the weights, installed --no-deps: their declared
#   dependencies (a second, CUDA torch; webrtcvad, a C build; librosa; ovos_plugin_manager) are not
#   needed to run the networks, which s3prl_dd rebuilds / runs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "${PIP[@]}" install torch torchaudio
  else
    "${PIP[@]}" install torch==2.13.0
  fi
fi
extras="[report,pretrained]"   # matplotlib for the report's plots; onnxruntime + onnx
[ "${1:-}" = "--test" ] && extras="[report,pretrained,test]"
"${PIP[@]}" install ".${extras}"
"${PIP[@]}" install --no-deps resemblyzer==0.1.4 ovos-ww-plugin-wakeforge==0.3.0
echo "s3prl-dd installed in $(pwd)/.venv"
