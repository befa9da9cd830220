"""Sequential baseline: plain TRL `SFTTrainer` + PEFT, the way a user without rftui trains N configs.

    python benchmarks/trl_one.py JOB.json OUT.json            # every config of the job, in turn (baseline b)
    python benchmarks/trl_one.py JOB.json OUT.json --only 2   # config 2 only (one process of baseline a)

Nothing from rftui is imported: the job file names a model directory (loadable with `from_pretrained`) and
JSONL files of already formatted prompt/completion rows. Every timestamp written is `time.time()` (wall clock)
so the driver can line it up with its own launch time. Per config it records: model load, trainer build,
`train()` wall time, every evaluation (when it ended, at which step, how long it took, eval_loss), the training
tokens TRL counted, the final adapter save, and the logged training losses.
"""
from __future__ import annotations

import time

T_PROCESS = time.time()  # before the heavy imports: the import cost is reported

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402


def read_jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("job")
    parser.add_argument("out")
    parser.add_argument("--only", type=int, default=None, help="train only config number ONLY (0-based)")
    opts = parser.parse_args()
    with open(opts.job, encoding="utf-8") as fh:
        job = json.load(fh)

    threads = int(job.get("threads") or 0)
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))

    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    t_imported = time.time()
    if threads:
        torch.set_num_threads(threads)
    device = job["device"]
    on_cuda = device == "cuda"
    train_rows = read_jsonl(job["train_file"])
    eval_rows = read_jsonl(job["eval_file"])

    class TimedSFT(SFTTrainer):
        """SFTTrainer that stamps every evaluation (its end time, step, duration and loss)."""

        def evaluate(self, *args, **kwargs):
            t0 = time.perf_counter()
            metrics = super().evaluate(*args, **kwargs)
            self.bench_evals.append({"time": time.time(), "step": int(self.state.global_step),
                                     "seconds": time.perf_counter() - t0,
                                     "eval_loss": metrics.get("eval_loss")})
            return metrics

    class Stamps(TrainerCallback):
        def __init__(self, record: dict):
            self.record = record

        def on_train_begin(self, args, state, control, **kwargs):
            self.record["train_begin"] = time.time()

        def on_step_end(self, args, state, control, **kwargs):
            if "first_step_end" not in self.record:
                self.record["first_step_end"] = time.time()

    configs = job["configs"]
    chosen = range(len(configs)) if opts.only is None else [opts.only]
    results = []
    scratch = tempfile.mkdtemp(prefix="rftui-bench-trl-")
    try:
        for index in chosen:
            cfg = configs[index]
            rec: dict = {"run_id": cfg["run_id"], "label": cfg["label"], "start": time.time()}
            training = dict(cfg["training"])
            seed = int(training.pop("seed", job.get("seed", 42)))
            eval_steps = training.pop("eval_steps")
            training.pop("eval_strategy", None)
            set_seed(seed)
            t0 = time.perf_counter()
            model_kwargs = dict(job.get("model_kwargs") or {})
            model = AutoModelForCausalLM.from_pretrained(job["model_path"], **model_kwargs)
            if on_cuda:
                model.to("cuda")
            tokenizer = AutoTokenizer.from_pretrained(job["model_path"])
            rec["model_load_seconds"] = time.perf_counter() - t0
            out_dir = os.path.join(scratch, cfg["run_id"])
            args = SFTConfig(
                output_dir=out_dir, report_to="none", save_strategy="no", eval_strategy="steps",
                eval_steps=eval_steps, disable_tqdm=True, use_cpu=not on_cuda, seed=seed,
                bf16=bool(job.get("bf16")) and on_cuda, fp16=bool(job.get("fp16")) and on_cuda, **training)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer = TimedSFT(model=model, args=args, train_dataset=Dataset.from_list(train_rows),
                                   eval_dataset=Dataset.from_list(eval_rows), processing_class=tokenizer,
                                   peft_config=LoraConfig(task_type="CAUSAL_LM", **cfg["lora"]),
                                   callbacks=[Stamps(rec)])
            trainer.bench_evals = []
            rec["trainer_build_seconds"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                trainer.train()
            rec["train_seconds"] = time.perf_counter() - t0  # train() wall time, evaluations included
            t0 = time.perf_counter()
            trainer.save_model(os.path.join(out_dir, "final"))  # rftui exports the final adapter too
            rec["save_seconds"] = time.perf_counter() - t0
            rec["evals"] = trainer.bench_evals
            rec["eval_seconds"] = sum(e["seconds"] for e in trainer.bench_evals)
            rec["tokens"] = int(getattr(trainer, "_total_train_tokens", 0))
            rec["losses"] = {int(h["step"]): h["loss"] for h in trainer.state.log_history if "loss" in h}
            rec["global_step"] = int(trainer.state.global_step)
            rec["end"] = time.time()
            results.append(rec)
            del trainer, model
            if on_cuda:
                torch.cuda.empty_cache()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    with open(opts.out, "w", encoding="utf-8") as fh:
        json.dump({"process_start": T_PROCESS, "imported": t_imported, "runs": results, "end": time.time()}, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
