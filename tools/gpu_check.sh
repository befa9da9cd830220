#!/usr/bin/env bash
# One-shot CUDA check on a lent GPU machine (see README, "GPU"): carried wheels, CUDA tests, smoke and chatqa_lite.
# Before: `bash tools/gpu_wheels.sh` here, then carry `.whl`. Full logs go to $OUT (or /tmp/gpu-check) for a post-mortem.
logs=${OUT:-/tmp/gpu-check}
mkdir -p "$logs"
if ! ls .whl/*.whl >/dev/null 2>&1; then
  echo "no wheels in .whl/: run tools/gpu_wheels.sh on the CPU machine and carry .whl"; exit 1
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD OMP_NUM_THREADS=4 HF_HUB_OFFLINE=1 RFTUI_CACHE=/tmp/rftui-cache PYTHONUNBUFFERED=1
rm -rf /tmp/gw  # a rerun on a warm machine would find last run's experiments and refuse to start them
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch, transformers, trl, peft, datasets, rouge_score; print('versions', torch.__version__, transformers.__version__, trl.__version__, peft.__version__, datasets.__version__, 'cuda', torch.cuda.is_available())" || exit 1
python3 -m pytest -q -p no:cacheprovider -rs tests/test_training_correctness.py tests/test_checkpoint.py tests/test_offload.py -k "cuda or trl or offload or placed or shared_model" > "$logs/pytest.log" 2>&1
tail -8 "$logs/pytest.log"
python3 -m rftui run sample_configs/smoke.yaml --no-ui --no-tracking --workdir /tmp/gw > "$logs/smoke.log" 2>&1
tail -12 "$logs/smoke.log"
t0=$SECONDS  # /usr/bin/time is not in every image
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "chatqa_lite wall %e s, max rss %M KB" python3 -m rftui run sample_configs/chatqa_lite.yaml --no-ui --no-tracking --workdir /tmp/gw > "$logs/chatqa.log" 2>&1
else
  python3 -m rftui run sample_configs/chatqa_lite.yaml --no-ui --no-tracking --workdir /tmp/gw > "$logs/chatqa.log" 2>&1
  echo "chatqa_lite wall $((SECONDS - t0)) s" >> "$logs/chatqa.log"
fi
tail -12 "$logs/chatqa.log"
cat /tmp/gw/*/logs/worker-0.log > "$logs/workers.log" 2>/dev/null
grep -h "device\|cuda\|warning" /tmp/gw/*/logs/worker-0.log | head -8
python3 - <<'PY'
import sqlite3
c = sqlite3.connect('/tmp/gw/chatqa-lite/state.db')
print('quanta (mean switch s, mean train s, max switch s):', c.execute("select avg(switch_seconds), avg(train_seconds), max(switch_seconds) from quanta where status='done'").fetchone())
PY
