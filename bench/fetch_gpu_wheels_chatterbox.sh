#!/usr/bin/env bash
# Downloads exactly the wheels that bench/chatterbox_speed.py needs on the GPU machine into .whl-chatterbox/
# (git-ignored). chatterbox-tts 0.1.7 pins torch 2.6.0, torchaudio 2.6.0 and transformers 5.2.0; there it runs
# over the machine's own torch 2.11 (cu130), torchaudio and transformers 5.x, so the package goes in without
# its pins (--no-deps) with the pure-Python and cp312 manylinux packages it imports; never torch,
# torchaudio, numpy or transformers.
#
#   bench/fetch_gpu_wheels_chatterbox.sh     # then, in the device call (carry: [".whl-chatterbox"]):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
#       --target /tmp/site .whl-chatterbox/*.whl && export PYTHONPATH=/tmp/site || exit
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
DEST=.whl-chatterbox
mkdir -p "$DEST"
rm -f "$DEST"/*.whl

WHEELS=(
  chatterbox-tts==0.1.7    # the package itself, without its pins
  diffusers==0.29.0        # S3Gen's flow-matching decoder blocks (the package pins it)
  resemble-perth==1.0.1    # Perth's watermarker, applied in every generate()
  setuptools==80.9.0       # perth imports pkg_resources, gone from setuptools 81
  s3tokenizer==0.3.0       # the speech tokenizer S3Gen and prepare_conditionals use
  onnx==1.23.2             # imported by s3tokenizer.utils (protobuf and ml_dtypes are the machine's)
  conformer==0.3.2         # S3Gen's encoder
  omegaconf==2.4.0         # imported by S3Gen's flow
  pyloudnorm==0.2.0        # Turbo's loudness normalisation of a reference
  librosa==0.11.0          # reference loading and resampling
  soxr==1.1.0              # librosa
  audioread==3.1.0         # librosa
  pooch==1.9.0             # librosa
  platformdirs==4.14.8     # pooch
  decorator==5.3.1         # librosa
  soundfile==0.14.0        # librosa
  cffi==2.1.1              # soundfile
  pycparser==3.12          # cffi
)

"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$DEST" "${WHEELS[@]}"

ls -l "$DEST"
count=$(ls "$DEST"/*.whl | wc -l)
echo "$count wheels (${#WHEELS[@]} asked for), $(du -sh "$DEST" | cut -f1) in $DEST"
[ "$count" -eq "${#WHEELS[@]}" ] || { echo "wheel count differs from the list" >&2; exit 1; }
