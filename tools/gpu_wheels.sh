#!/usr/bin/env bash
# Fills .whl/ with what tools/gpu_check.sh and `benchmarks/run.py --device cuda` need on a lent GPU machine (Python 3.12,
# x86-64, torch/accelerate/tokenizers/safetensors/huggingface_hub preinstalled, no network) and that its image lacks:
# trl, datasets (+ dill, multiprocess), rouge-score (+ nltk). transformers and peft travel too, at the versions this
# checkout's venv tests with, since the image's differ. Run it here, in the repo root; then name `.whl` in the run's carry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p .git/info
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl
mkdir .whl
pins=$("$PY" -c 'import importlib.metadata as m, sys; print(" ".join(f"{p}=={m.version(p)}" for p in sys.argv[1:]))' \
  trl transformers peft datasets dill multiprocess nltk)
rouge=$("$PY" -c 'import importlib.metadata as m; print(m.version("rouge-score"))')
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl $pins
"$PY" -m pip wheel -q --no-deps -w .whl "rouge-score==$rouge"  # published as an sdist only; the wheel is pure Python
ls .whl
du -sh .whl
