"""Where does rftui's worker spend time compared with plain TRL? In one process, CPU time (not wall time), so a
loaded machine does not blur it.

    python benchmarks/profile_step.py [--size tiny|large] [--steps S] [--eval-steps E] [--profile trl|rftui]

For config r1 (and r2) of the chatqa_lite grid it times, alternately and twice each:
  trl        plain `SFTTrainer.train()` (eval every E steps), fp32 like benchmarks/trl_one.py (--trl-bf16: TRL's
             own default, bf16 autocast on a CPU that supports it, which rftui does not do on CPU);
  rftui-1    `TrainingHost.train_quantum` for the same config alone (K=1: one quantum, one checkpoint);
  rftui-4    the same config while 3 other runs share the base (all 4 adapters added, r1 trained).
Reported per contender: CPU seconds (time.process_time) of training steps and of evaluations, from the events
rftui emits and from a timed `evaluate` in TRL. `--profile X` runs pyinstrument (if installed) over X's training.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main() -> int:
    import run as bench  # benchmarks/run.py: sizes, data, configs, model building

    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="large")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--eval-steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--profile", default=None, choices=("trl", "rftui"))
    parser.add_argument("--only", default="trl,rftui-1,rftui-4", help="contenders to run, comma-separated")
    parser.add_argument("--trl-bf16", dest="trl_bf16", action="store_true",
                        help="let TRL train with bf16 autocast on the CPU (its SFTConfig default); rftui trains fp32")
    opts = parser.parse_args()

    import torch

    torch.set_num_threads(1)

    class O:
        smoke = False
        repeats = 1
        sizes = opts.size
        device = "cpu"
        n = 4
        k = 1
        max_steps = opts.steps
        eval_steps = opts.eval_steps

    size = bench.sizes_for(O)[0]
    root = Path(tempfile.mkdtemp(prefix="rftui-prof-"))
    model_name, model_path = bench.prepare_model(size, root, "cpu")
    files = bench.prepare_data(size, root)
    configs = bench.grid_configs(size)
    results: dict[str, list[dict]] = {}

    def trl_run(cfg: dict) -> dict:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
        from trl import SFTConfig, SFTTrainer

        rows = [json.loads(line) for line in open(files["train_file"], encoding="utf-8")]
        evals = [json.loads(line) for line in open(files["eval_file"], encoding="utf-8")]
        training = dict(cfg["training"])
        eval_steps = training.pop("eval_steps")
        training.pop("eval_strategy", None)
        seed = training.pop("seed")
        set_seed(seed)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype="auto", use_cache=False)
        tok = AutoTokenizer.from_pretrained(model_path)
        clock = {"eval_cpu": 0.0, "eval_wall": 0.0}

        class Timed(SFTTrainer):
            def evaluate(self, *a, **k):
                c0, w0 = time.process_time(), time.perf_counter()
                out = super().evaluate(*a, **k)
                clock["eval_cpu"] += time.process_time() - c0
                clock["eval_wall"] += time.perf_counter() - w0
                return out

        args = SFTConfig(output_dir=str(root / "trl-out"), report_to="none", save_strategy="no",
                         eval_strategy="steps", eval_steps=eval_steps, disable_tqdm=True, use_cpu=True, seed=seed,
                         bf16=opts.trl_bf16, fp16=False, **training)
        trainer = Timed(model=model, args=args, train_dataset=Dataset.from_list(rows),
                        eval_dataset=Dataset.from_list(evals), processing_class=tok,
                        peft_config=LoraConfig(task_type="CAUSAL_LM", **cfg["lora"]))
        c0, w0 = time.process_time(), time.perf_counter()
        if opts.profile == "trl":
            with profiler("trl"):
                trainer.train()
        else:
            trainer.train()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        return {"cpu_total": cpu, "train_cpu": cpu - clock["eval_cpu"], "eval_cpu": clock["eval_cpu"],
                "train_wall": wall - clock["eval_wall"], "eval_wall": clock["eval_wall"]}

    def rftui_run(cfgs: list[dict], trained: str) -> dict:
        from rftui.config.runspec import RunSpec
        from rftui.config.yaml_config import load_experiment_file
        from rftui.engine.messages import EvalDone, QuantumStarted, StepLogged, TrainQuantum
        from rftui.training.host import TrainingHost

        template = load_experiment_file(HERE.parent / "sample_configs" / "chatqa_lite.yaml").runs[0]
        host = TrainingHost(0, device="cpu", num_threads=1)
        ck, ad = root / f"ck-{time.time_ns()}", root / f"ad-{time.time_ns()}"
        stamps = {"eval_cpu": 0.0}
        try:
            for cfg in cfgs:
                spec = RunSpec(run_id=cfg["run_id"], label=cfg["label"], model_name=model_name,
                               training=dict(cfg["training"]), lora=dict(cfg["lora"]),
                               model_kwargs={"dtype": "auto", "use_cache": False}, generation={"enabled": False},
                               formatting_func=template.formatting_func)
                steps = cfg["training"]["max_steps"]
                # Others: create the run (one step, so its adapter and optimizer exist), then train `trained`.
                end = steps if cfg["run_id"] == trained else 1
                cmd = TrainQuantum(run=spec, chunk=0, num_chunks=1, start_step=0, end_step=end, total_steps=steps,
                                   train_path=files["train_file"], eval_path=files["eval_file"],
                                   checkpoint_root=str(ck), adapters_root=str(ad))
                if cfg["run_id"] != trained:
                    host.train_quantum(cmd, lambda e: None, lambda: None)
                    continue
                events = []
                c0 = time.process_time()
                last = [c0]

                def emit(event):
                    now = time.process_time()
                    events.append((type(event).__name__, now - last[0]))
                    last[0] = now

                if opts.profile == "rftui":
                    with profiler("rftui"):
                        done = host.train_quantum(cmd, emit, lambda: None)
                else:
                    done = host.train_quantum(cmd, emit, lambda: None)
                total_cpu = time.process_time() - c0
                return {"train_wall": done.train_seconds, "eval_wall": done.eval_seconds,
                        "switch_wall": done.switch_seconds, "cpu_total": total_cpu}
        finally:
            host.close()
        return {}

    order = [("trl", lambda: trl_run(configs[0])),
             ("rftui-1", lambda: rftui_run(configs[:1], configs[0]["run_id"])),
             ("rftui-4", lambda: rftui_run(configs[1:] + configs[:1], configs[0]["run_id"]))]
    for rep in range(opts.repeats):
        for name, fn in order:
            if name not in opts.only.split(","):
                continue
            res = fn()
            results.setdefault(name, []).append(res)
            print(rep, name, {k: round(v, 3) for k, v in res.items()}, flush=True)
    return 0


class profiler:
    def __init__(self, name: str):
        self.name = name
        self.p = None

    def __enter__(self):
        try:
            from pyinstrument import Profiler
        except ImportError:
            print("pyinstrument is not installed; no profile", flush=True)
            return self
        self.p = Profiler(interval=0.005)
        self.p.start()
        return self

    def __exit__(self, *exc):
        if self.p is not None:
            self.p.stop()
            print(self.p.output_text(unicode=False, color=False, show_all=bool(os.environ.get("PROFILE_ALL"))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
