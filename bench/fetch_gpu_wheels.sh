#!/usr/bin/env bash
# Downloads exactly the wheels that bench/qwen_speed.py needs on the GPU machine into .whl/
# (git-ignored: /.whl/ in .gitignore). The machine has Python 3.12, torch 2.11+cu130, torchaudio,
# numpy, scipy, numba, einops, onnxruntime, safetensors, matplotlib ... but transformers 5.x,
# huggingface-hub 1.x and tokenizers 0.23, which qwen-tts 0.1.1 cannot use; never carry torch,
# torchaudio or numpy.
#
#   bench/fetch_gpu_wheels.sh            # then, in the device call (carry: [".whl"]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit
#
#   bench/fetch_gpu_wheels.sh install    # the folder .whl-install/ (git-ignored) for installing mcp-tts and its
#                                        # qwen family there with our own installer, offline, over its torch:
#   python3 -m bench.gpu_install         # there, carry: [".whl-install"]; it runs, from that folder,
#       pip install --no-index --find-links .whl-install .      (the server, in a venv over python3's packages)
#       mcp-tts install qwen --python python3 --find-links .whl-install --no-index
#   (resolved by bench/gpu_wheels.py: cp312 manylinux, never torch; what the machine has is left out,
#   bench/gpu_packages.txt)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = install ]; then
  exec "${PYTHON:-.venv/bin/python}" -m bench.gpu_wheels --dest .whl-install
fi

PY=${PYTHON:-python3}
DEST=.whl
mkdir -p "$DEST"
rm -f "$DEST"/*.whl

WHEELS=(
  qwen-tts==0.1.1          # the package itself (pins transformers and accelerate)
  transformers==4.57.3     # qwen-tts pins it; the machine has 5.x
  huggingface-hub==0.36.2  # transformers 4.57.3 needs <1.0; the machine has 1.x
  accelerate==1.12.0       # qwen-tts pins it
  tokenizers==0.22.2       # transformers 4.57.3 checks <=0.23.0 at import; the machine has 0.23.2
  librosa==0.11.0          # imported by qwen_tts.inference
  soxr==1.1.0              # librosa
  audioread==3.1.0         # librosa
  pooch==1.9.0             # librosa
  platformdirs==4.14.8     # pooch
  decorator==5.3.1         # librosa
  soundfile==0.14.0        # imported by qwen_tts.inference, librosa
  cffi==2.1.1              # soundfile
  pycparser==3.12          # cffi
  sox==1.4.1               # imported at `import qwen_tts` (1.5.0 is sdist-only)
)

"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${WHEELS[@]}"

ls -l "$DEST"
count=$(ls "$DEST"/*.whl | wc -l)
echo "$count wheels (${#WHEELS[@]} asked for), $(du -sh "$DEST" | cut -f1) in $DEST"
[ "$count" -eq "${#WHEELS[@]}" ] || { echo "wheel count differs from the list" >&2; exit 1; }
