"""rftui against sequential TRL: wall time, time to first signal, switch overhead, memory.

    python benchmarks/run.py [--smoke] [--device cpu|cuda] [--out FILE.json] [--repeats R] [--sizes a,b]

In one invocation, on one machine, for each model size, it runs R rounds of four measurements, interleaved so
that slow drifts of a shared machine hit every contender alike:

    (b)   baseline, one process:  plain TRL SFTTrainer + PEFT trains the N configs one after another
    rftui rftui headless on the same N configs, K chunks          (the tree: controller + forkserver + worker)
    (a)   baseline, N processes: one fresh `python trl_one.py --only i` per config, one after another
    rftui-1  rftui on config 1 alone                               (the denominator of the memory ratio)

Every contender is a fresh child process (or N of them) started by this driver, so each pays its own imports
and model loads, and its whole process tree is sampled for memory. Ratios are formed inside a round (paired)
and the medians over rounds are reported. See `FORMULAS` below for every definition; they are also written into
the JSON output.

--smoke: the built-in tiny model, N=2 configs, K=2 chunks, 8 steps, one round (about a minute on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FORMULAS = {
    "wall": "seconds from launching the contender's first process to the exit of its last process "
            "(imports, model loads, training, evaluation, saving and shutdown all included)",
    "wall_ratio_vs_one_process": "median over rounds of wall(rftui) / wall(baseline b: one process, configs in turn)",
    "wall_ratio_vs_processes": "median over rounds of wall(rftui) / wall(baseline a: one process per config)",
    "first_signal": "seconds from launch until EVERY config has its eval_loss at the end of its first chunk "
                    "(the first evaluation at an optimizer step >= s1 = the last step of chunk 1); for the "
                    "sequential baselines that is the N-th config's evaluation at step s1",
    "first_signal_speedup": "median over rounds of first_signal(baseline b) / first_signal(rftui), both from launch",
    "first_signal_speedup_after_startup": "the same ratio with each clock started when the first config begins "
                                          "its first optimizer step (baseline: on_train_begin of config 1; rftui: "
                                          "QuantumStarted of the first quantum), i.e. without the one-time imports "
                                          "and first model load that both pay once",
    "first_signal_ideal": "(K*(N-1) + 1) / N: sequentially the last config's first signal comes after (N-1) whole "
                          "runs plus 1/K of a run; with chunks it comes after N quanta = N/K of a run; "
                          "((N-1) + 1/K) / (N/K) = (K(N-1)+1)/N. Fixed costs (imports, loads) are not in it: it is "
                          "the bound for first_signal_speedup_after_startup",
    "first_signal_ideal_from_launch": "the bound for first_signal_speedup (from launch): a scheduler that pays the "
                                      "baseline's own start-up S_b (launch to its first optimizer step) and then "
                                      "reaches the ideal on the training clock: first_signal(b) / (S_b + "
                                      "first_signal_after_startup(b) / first_signal_ideal); median over rounds",
    "switch_overhead": "per quantum: switch-in (QuantumStarted.load_seconds: worker time from receiving the "
                       "command to the first optimizer step; counted for chunks >= 2 only, because the first "
                       "quantum of a run builds it - base load, tokenization, trainer - which the baseline pays "
                       "too and which is reported as setup) + switch-out (QuantumDone.switch_seconds minus "
                       "load_seconds: RNG capture, the checkpoint write, the final adapter export on the last "
                       "quantum, and the per-step bookkeeping of the step loop) + the controller gap (from the "
                       "controller receiving that QuantumDone to it sending the next TrainQuantum to the same "
                       "worker, measured in the controller process)",
    "switch_overhead_share": "median over rounds of sum(switch_overhead over all quanta) / wall(rftui)",
    "switch_overhead_share_excl_final": "the same without the switch-out of each run's last quantum (its final "
                                        "checkpoint plus the final adapter export, paid once per run like the "
                                        "baseline's save_model)",
    "setup_share": "sum of the first quantum's load_seconds of every run (base load, tokenization, trainer build) "
                   "/ wall(rftui)",
    "peak_rss": "peak over time of the summed RSS of the contender's whole process tree, sampled every 0.1 s "
                "(for rftui: controller + forkserver + worker; shared pages count once per process)",
    "peak_pss": "the same with PSS (shared pages split between the processes that map them), from smaps_rollup",
    "memory_ratio": "median over rounds of peak_rss(rftui, N configs) / peak_rss(rftui, 1 config: config 1)",
    "memory_ratio_pss": "the same with peak_pss",
    "tokens_per_second_train": "training tokens (non-padding, as TRL counts num_tokens) / seconds spent in "
                               "optimizer steps (rftui: sum of QuantumDone.train_seconds; baseline: train() wall "
                               "time minus evaluation time)",
    "tokens_per_second_wall": "training tokens / wall",
    "cpu_seconds": "user + system CPU seconds of every process of the contender's tree (from /proc/PID/stat, sampled "
                   "every 0.2 s; the last sample before a process exits counts). On a shared, overloaded machine "
                   "CPU time is far steadier than wall time, so cpu_ratio_* back up the wall ratios",
    "cpu_ratio_vs_one_process": "median over rounds of cpu_seconds(rftui) / cpu_seconds(baseline b)",
    "cpu_ratio_vs_processes": "median over rounds of cpu_seconds(rftui) / cpu_seconds(baseline a)",
    "gpu_peak_mib": "peak of (device memory used - memory used before launch), from NVML or nvidia-smi; null "
                    "without either",
    "swap_floor_seconds": "CUDA only: per switch, (adapter + optimizer bytes of the run moved in) / host->device "
                          "bandwidth + (bytes of the run moved out) / device->host bandwidth, both measured in the "
                          "same invocation with pinned-memory copies; the rftui run uses adapter_budget_bytes=1 so "
                          "that every switch offloads the previous run and loads the next",
}


# ----------------------------------------------------------------------------- sizes


@dataclass
class Size:
    name: str
    n: int
    k: int
    max_steps: int
    eval_steps: int
    train_rows: int
    eval_rows: int
    batch: int = 4
    max_length: int = 256
    logging_steps: int = 2
    shape: dict | None = None        # None: the built-in rftui/tiny-llama
    bf16: bool = False
    repeats: int = 3
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def chunk1_end(self) -> int:
        base, extra = divmod(self.max_steps, self.k)
        return base + (1 if extra else 0)


LARGE_SHAPE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 12,
               "intermediate_size": 2560}
TINYLLAMA_SHAPE = {"hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
                   "intermediate_size": 5632, "vocab_size": 32000, "max_position_embeddings": 2048}


def sizes_for(opts) -> list[Size]:
    if opts.smoke:
        return [Size("tiny-smoke", n=2, k=2, max_steps=8, eval_steps=4, train_rows=32, eval_rows=8, repeats=1,
                     note="built-in rftui/tiny-llama, smoke configuration")]
    table = {
        "tiny": Size("tiny", n=4, k=4, max_steps=128, eval_steps=8, train_rows=128, eval_rows=24, repeats=3,
                     note="built-in rftui/tiny-llama (~0.6M params), chatqa_lite work: 128 rows, batch 4, 128 steps"),
        "large": Size("large", n=4, k=4, max_steps=8, eval_steps=2, train_rows=32, eval_rows=8, max_length=128,
                      shape=LARGE_SHAPE, repeats=1,
                      note="random-init Llama ~100M params (hidden 768, 12 layers), 8 steps, max_length 128"),
        "tinyllama": Size("tinyllama", n=4, k=4, max_steps=32, eval_steps=8, train_rows=128, eval_rows=24,
                          shape=TINYLLAMA_SHAPE, bf16=True, repeats=1,
                          note="random-init TinyLlama-1.1B shape (hidden 2048, 22 layers, 32/4 heads, vocab 32000), "
                               "bf16 weights and autocast"),
    }
    if opts.sizes:
        names = [s.strip() for s in opts.sizes.split(",") if s.strip()]
    else:
        names = ["tinyllama"] if opts.device == "cuda" else ["tiny", "large"]
    out = []
    for name in names:
        if name not in table:
            raise SystemExit(f"unknown size {name!r}; choose from {', '.join(table)}")
        size = table[name]
        if opts.repeats:
            size.repeats = opts.repeats
        for attr in ("n", "k", "max_steps", "eval_steps"):
            value = getattr(opts, attr, None)
            if value:
                setattr(size, attr, value)
        out.append(size)
    return out


def grid_configs(size: Size) -> list[dict]:
    """The chatqa_lite grid (r=8/32 x lr 1e-3/1e-4), in the sample's run order, cut to N configs."""
    from rftui.config.yaml_config import load_experiment_file

    spec = load_experiment_file(REPO / "sample_configs" / "chatqa_lite.yaml")
    configs = []
    for run in spec.runs[: size.n]:
        lora = {k: v for k, v in dict(run.lora).items()}
        # The sample's own training options (scheduler, gradient_checkpointing, ...) with the size's lengths; fp16/bf16
        # are set per device later (rftui trains fp32 on CPU, so the baseline must too: TRL would default to bf16).
        training = {k: v for k, v in dict(run.training).items() if k not in ("fp16", "bf16")}
        training.update({
            "per_device_train_batch_size": size.batch, "per_device_eval_batch_size": size.batch,
            "max_steps": size.max_steps, "gradient_accumulation_steps": 1, "logging_steps": size.logging_steps,
            "eval_strategy": "steps", "eval_steps": size.eval_steps, "max_length": size.max_length,
            "learning_rate": float(run.training["learning_rate"]), "seed": 42,
        })
        configs.append({"run_id": run.run_id, "label": run.label, "training": training, "lora": lora})
    if len(configs) < size.n:
        raise SystemExit(f"chatqa_lite has only {len(configs)} configs; N={size.n} asked")
    return configs


# ----------------------------------------------------------------------------- models and data


def prepare_model(size: Size, root: Path, device: str) -> tuple[str, str]:
    """(model name for rftui, model directory for TRL)."""
    from rftui.training.builtin_model import resolve_model_path

    tiny_dir = resolve_model_path("rftui/tiny-llama")
    if size.shape is None:
        return "rftui/tiny-llama", tiny_dir
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    out = root / f"model-{size.name}"
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    shape = dict(size.shape)
    vocab = shape.pop("vocab_size", len(tokenizer))
    config = LlamaConfig(vocab_size=vocab, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=None, tie_word_embeddings=size.shape.get("vocab_size") is None,
                         max_position_embeddings=shape.pop("max_position_embeddings", 512), use_cache=False, **shape)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    build_device = "cuda" if device == "cuda" else "cpu"
    with torch.device(build_device):
        model = LlamaForCausalLM(config)
    if size.bf16:
        model = model.to(torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    size.extra["params"] = params
    size.extra["build_seconds"] = round(time.perf_counter() - t0, 2)
    log(f"  built {size.name}: {params / 1e6:.1f}M params in {size.extra['build_seconds']}s -> {out}")
    return str(out), str(out)


def prepare_data(size: Size, root: Path) -> dict[str, str]:
    """Raw rows (rftui formats them itself with the sample's hook) and the same rows formatted with
    `rftui.data.formatting.support_chat` (what the TRL baseline trains on)."""
    from rftui.config.yaml_config import load_experiment_file
    from rftui.data.formatting import support_chat
    from rftui.data.sources import load_rows

    spec = load_experiment_file(REPO / "sample_configs" / "chatqa_lite.yaml")
    base = Path(spec.data.base_dir)
    train_src = {**dict(spec.data.train), "select": [0, size.train_rows]}
    eval_start = int(dict(spec.data.eval)["select"][0])
    eval_src = {**dict(spec.data.eval), "select": [eval_start, eval_start + size.eval_rows]}
    train, evals = load_rows(train_src, base), load_rows(eval_src, base)
    files = {}
    for key, rows in (("raw_train_file", train), ("raw_eval_file", evals),
                      ("train_file", [support_chat(r) for r in train]), ("eval_file", [support_chat(r) for r in evals])):
        path = root / f"{size.name}-{key}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        files[key] = str(path)
    return files


def adapter_optimizer_bytes(size: Size, lora: dict) -> int:
    """fp32 LoRA A and B matrices of every targeted projection, times 3 (weights + Adam exp_avg + exp_avg_sq)."""
    shape = size.shape or {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                           "num_key_value_heads": 4, "intermediate_size": 384}
    hidden, layers = shape["hidden_size"], shape["num_hidden_layers"]
    head_dim = hidden // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * head_dim
    inter = shape["intermediate_size"]
    dims = {"q_proj": (hidden, hidden), "k_proj": (hidden, kv), "v_proj": (hidden, kv), "o_proj": (hidden, hidden),
            "gate_proj": (hidden, inter), "up_proj": (hidden, inter), "down_proj": (inter, hidden)}
    r = int(lora["r"])
    params = sum(r * (dims[m][0] + dims[m][1]) for m in lora["target_modules"]) * layers
    return params * 4 * 3


# ----------------------------------------------------------------------------- sampling memory


def _pss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _proc_children(pid: int) -> list[int] | None:
    """Direct children from /proc/PID/task/*/children (cheap); None where the kernel does not offer it."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                out.extend(int(x) for x in fh.read().split())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            continue
    return out


def _tree_pids(root: int) -> list[int]:
    first = _proc_children(root)
    if first is not None:
        out, stack = [root], list(first)
        while stack:
            pid = stack.pop()
            out.append(pid)
            stack.extend(_proc_children(pid) or [])
        return out
    try:
        import psutil

        proc = psutil.Process(root)
        return [root] + [c.pid for c in proc.children(recursive=True)]
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - the process is gone
        return []
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(parents.get(pid, []))
    return out


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_and_name(pid: int) -> tuple[float, str] | None:
    """(user + system CPU seconds so far, short command name) of a process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    seconds = (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    name = " ".join(Path(a).name if i < 2 else a for i, a in enumerate(argv[:3]))[:80]
    return seconds, name


def _rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return 0


class GpuMemory:
    """Device memory used on GPU 0, from NVML (nvidia-ml-py) or nvidia-smi; `read()` is None without either."""

    def __init__(self, enabled: bool):
        self.kind = None
        self._handle = None
        if not enabled:
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self._nvml = pynvml
            self.kind = "nvml"
            return
        except Exception:  # noqa: BLE001
            pass
        if shutil.which("nvidia-smi"):
            self.kind = "nvidia-smi"

    def read(self) -> float | None:
        """MiB in use."""
        if self.kind == "nvml":
            return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
        if self.kind == "nvidia-smi":
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5).stdout
                return float(out.strip().splitlines()[0])
            except Exception:  # noqa: BLE001
                return None
        return None


class TreeSampler(threading.Thread):
    """Samples the summed RSS / PSS of a process tree (and GPU memory) until stopped; keeps the peaks."""

    def __init__(self, pid: int, gpu: GpuMemory | None, interval: float = 0.2):
        super().__init__(daemon=True)
        self.pid, self.gpu, self.interval = pid, gpu, interval
        self.cpu: dict[int, tuple[float, str]] = {}  # pid -> (CPU seconds at the last sample, name)
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self.gpu_base = gpu.read() if gpu is not None and gpu.kind else None
        self.gpu_peak = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        gpu_every = 5 if self.gpu is not None and self.gpu.kind == "nvidia-smi" else 1
        i = 0
        while not self._stop_event.is_set():
            pids = _tree_pids(self.pid)
            rss = pss = 0
            for pid in pids:
                rss += _rss_kib(pid) or 0
                pss += _pss_kib(pid) or 0
                got = _cpu_and_name(pid)
                if got is not None:
                    self.cpu[pid] = got
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(pids))
            if self.gpu_base is not None and i % gpu_every == 0:
                used = self.gpu.read()
                if used is not None:
                    self.gpu_peak = max(self.gpu_peak or 0.0, used - self.gpu_base)
            i += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> dict:
        self._stop_event.set()
        self.join(timeout=5)
        return {"peak_rss_mib": round(self.peak_rss / 1024, 1), "peak_pss_mib": round(self.peak_pss / 1024, 1),
                "max_processes": self.peak_procs,
                "cpu_seconds": round(sum(c for c, _ in self.cpu.values()), 2),
                "cpu_by_process": {f"{pid} {name}": round(c, 2) for pid, (c, name) in self.cpu.items()},
                "gpu_peak_mib": None if self.gpu_peak is None else round(self.gpu_peak, 1)}


# ----------------------------------------------------------------------------- running contenders


def log(message: str) -> None:
    print(message, flush=True)


def child_env(threads: int) -> dict:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def run_child(args: list[str], log_path: Path, env: dict, gpu: GpuMemory | None, timeout: float) -> dict:
    t_launch = time.time()
    with open(log_path, "ab") as logfh:
        proc = subprocess.Popen([sys.executable, *args], stdout=logfh, stderr=subprocess.STDOUT, env=env,
                                cwd=str(REPO))
        sampler = TreeSampler(proc.pid, gpu)
        sampler.start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        t_end = time.time()
    mem = sampler.stop()
    if rc != 0:
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(args)} exited with {rc}; log {log_path}:\n{tail}")
    return {"launch": t_launch, "end": t_end, "wall": t_end - t_launch, **mem}


def first_signal_time(evals: list[dict], s1: int) -> float | None:
    times = [e["time"] for e in evals if e["step"] >= s1]
    return min(times) if times else None


def summarize_trl(result: dict, launches: list[dict], size: Size) -> dict:
    """One baseline contender (b: one result file; a: N result files, one per process)."""
    runs = [r for res in result for r in res["runs"]]
    t0 = launches[0]["launch"]
    signals = [first_signal_time(r["evals"], size.chunk1_end) for r in runs]
    train_begin = runs[0].get("train_begin", t0)
    tokens = sum(r["tokens"] for r in runs)
    step_seconds = sum(r["train_seconds"] - r["eval_seconds"] for r in runs)
    wall = launches[-1]["end"] - t0
    return {
        "wall": wall,
        "first_signal": (max(signals) - t0) if all(s is not None for s in signals) else None,
        "first_signal_after_startup": (max(signals) - train_begin) if all(s is not None for s in signals) else None,
        "import_seconds": [res["imported"] - res["process_start"] for res in result],
        "launch_to_process_start": [res["process_start"] - l["launch"] for res, l in zip(result, launches)],
        "model_load_seconds": [r["model_load_seconds"] for r in runs],
        "trainer_build_seconds": [r["trainer_build_seconds"] for r in runs],
        "train_call_seconds": [r["train_seconds"] for r in runs],
        "eval_seconds": sum(r["eval_seconds"] for r in runs),
        "save_seconds": sum(r["save_seconds"] for r in runs),
        "tokens": tokens,
        "tokens_per_second_train": tokens / step_seconds if step_seconds > 0 else None,
        "tokens_per_second_wall": tokens / wall,
        "cpu_seconds": sum(l["cpu_seconds"] for l in launches),
        "peak_rss_mib": max(l["peak_rss_mib"] for l in launches),
        "peak_pss_mib": max(l["peak_pss_mib"] for l in launches),
        "gpu_peak_mib": max((l["gpu_peak_mib"] for l in launches if l["gpu_peak_mib"] is not None), default=None),
        "eval_loss_at_s1": {r["run_id"]: next((e["eval_loss"] for e in r["evals"] if e["step"] >= size.chunk1_end),
                                              None) for r in runs},
        "final_loss": {r["run_id"]: r["losses"][max(r["losses"], key=int)] for r in runs if r["losses"]},
    }


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def summarize_rftui(res: dict, launch: dict, size: Size, bytes_per_run: dict[str, int] | None = None,
                    bandwidth: dict | None = None) -> dict:
    t0 = launch["launch"]
    events = res["events"]
    wall = launch["end"] - t0
    ready = [e["time"] for e in events if e["type"] == "WorkerReady"]
    started = [e for e in events if e["type"] == "QuantumStarted"]
    dones = [e for e in events if e["type"] == "QuantumDone"]
    evals = [e for e in events if e["type"] == "EvalDone"]
    run_ids = sorted({d["run_id"] for d in dones} | set(res["statuses"]))
    signals = {}
    for run_id in run_ids:
        t = [e["time"] for e in evals if e["run_id"] == run_id and e["step"] >= size.chunk1_end
             and "eval_loss" in e.get("metrics", {})]
        signals[run_id] = min(t) if t else None
    first_train = min((e["time"] for e in started), default=None)
    # Pair each QuantumDone with its QuantumStarted (same run, chunk; in order).
    start_by_key: dict[tuple, list[dict]] = {}
    for e in started:
        start_by_key.setdefault((e["run_id"], e["chunk"]), []).append(e)
    sends_by_worker: dict[int, list[float]] = {}
    for s in res["sends"]:
        if s["ok"]:
            sends_by_worker.setdefault(s["worker_id"], []).append(s["time"])
    quanta = []
    for d in dones:
        st = start_by_key.get((d["run_id"], d["chunk"]), [])
        load = st.pop(0)["load_seconds"] if st else 0.0
        later = [t for t in sends_by_worker.get(d["worker_id"], []) if t >= d["time"]]
        gap = (min(later) - d["time"]) if later else None
        setup = load if d["chunk"] == 0 else 0.0
        switch_in = load if d["chunk"] > 0 else 0.0
        switch_out = max(0.0, d["switch_seconds"] - load)
        quanta.append({"run_id": d["run_id"], "chunk": d["chunk"], "train": d["train_seconds"],
                       "eval": d["eval_seconds"], "setup": setup, "switch_in": switch_in, "switch_out": switch_out,
                       "gap": gap, "tokens": d["tokens"],
                       "switch": switch_in + switch_out + (gap or 0.0)})
    per_q = [q["switch"] for q in quanta]
    total_switch = sum(per_q)
    tokens = sum(q["tokens"] for q in quanta)
    train_s = sum(q["train"] for q in quanta)
    quanta_total = sum(q["train"] + q["eval"] + q["setup"] + q["switch_in"] + q["switch_out"] for q in quanta)
    gaps = [q["gap"] for q in quanta if q["gap"] is not None]
    out = {
        "wall": wall,
        "first_signal": (max(signals.values()) - t0) if signals and all(signals.values()) else None,
        "first_signal_after_startup": (max(signals.values()) - first_train)
        if signals and all(signals.values()) and first_train else None,
        "startup_seconds": (min(ready) - t0) if ready else None,
        "launch_to_process_start": res["process_start"] - t0,
        "controller_imports_seconds": res["setup_start"] - res["process_start"],
        "experiment_create_seconds": res["engine_start"] - res["setup_start"],
        "close_seconds": launch["end"] - res["close_start"],
        "quanta": len(quanta),
        "train_seconds": train_s,
        "eval_seconds": sum(q["eval"] for q in quanta),
        "setup_seconds": sum(q["setup"] for q in quanta),
        "switch_in_seconds": sum(q["switch_in"] for q in quanta),
        "switch_out_seconds": sum(q["switch_out"] for q in quanta),
        "controller_gap_seconds": sum(gaps),
        "controller_gap_median_ms": 1000 * statistics.median(gaps) if gaps else None,
        "controller_gap_p95_ms": 1000 * pct(gaps, 0.95) if gaps else None,
        "switch_seconds": total_switch,
        "switch_median_ms": 1000 * statistics.median(per_q) if per_q else None,
        "switch_p95_ms": 1000 * pct(per_q, 0.95) if per_q else None,
        "switch_in_median_ms": 1000 * statistics.median([q["switch_in"] for q in quanta if q["chunk"] > 0])
        if any(q["chunk"] > 0 for q in quanta) else None,
        "switch_out_median_ms": 1000 * statistics.median([q["switch_out"] for q in quanta]) if quanta else None,
        "switch_overhead_share": total_switch / wall,
        "switch_overhead_share_excl_final": sum(q["switch"] - (q["switch_out"] if q["chunk"] == size.k - 1 else 0.0)
                                                for q in quanta) / wall,
        "setup_share": sum(q["setup"] for q in quanta) / wall,
        "worker_busy_seconds": quanta_total,
        "unaccounted_seconds": wall - quanta_total - sum(gaps) - ((min(ready) - t0) if ready else 0.0),
        "tokens": tokens,
        "tokens_per_second_train": tokens / train_s if train_s > 0 else None,
        "tokens_per_second_wall": tokens / wall,
        "peak_rss_mib": launch["peak_rss_mib"],
        "peak_pss_mib": launch["peak_pss_mib"],
        "gpu_peak_mib": launch["gpu_peak_mib"],
        "max_processes": launch["max_processes"],
        "cpu_seconds": launch["cpu_seconds"],
        "cpu_by_process": launch["cpu_by_process"],
        "eval_loss_at_s1": {r: next((e["metrics"]["eval_loss"] for e in evals if e["run_id"] == r
                                     and e["step"] >= size.chunk1_end and "eval_loss" in e.get("metrics", {})), None)
                            for r in run_ids},
        "final_loss": {r: [e for e in events if e["type"] == "StepLogged" and e["run_id"] == r][-1]["metrics"].get("loss")
                       for r in run_ids if any(e["type"] == "StepLogged" and e["run_id"] == r for e in events)},
        "checkpoint_bytes": res.get("checkpoint_bytes", {}),
        "per_quantum": quanta,
    }
    if bytes_per_run and bandwidth:
        # Swap floor per switch: the incoming run's state in (H2D), the previous run's out (D2H).
        order = [(q["run_id"], q["chunk"]) for q in quanta]
        floors, measured = [], []
        for i, (run_id, chunk) in enumerate(order):
            if chunk == 0 or i == 0:
                continue
            prev = order[i - 1][0]
            floor = bytes_per_run[run_id] / bandwidth["h2d_bytes_per_s"] + bytes_per_run[prev] / bandwidth[
                "d2h_bytes_per_s"]
            floors.append(floor)
            measured.append(quanta[i]["switch_in"])
        if floors:
            out["swap_seconds_median_ms"] = 1000 * statistics.median(measured)
            out["swap_floor_seconds_median_ms"] = 1000 * statistics.median(floors)
            out["swap_over_floor"] = statistics.median(m / f for m, f in zip(measured, floors))
    return out


def run_trl(job_path: Path, workdir: Path, tag: str, env: dict, gpu, size: Size, only: int | None,
            timeout: float) -> tuple[dict, dict]:
    out = workdir / f"{tag}.json"
    args = [str(HERE / "trl_one.py"), str(job_path), str(out)] + ([] if only is None else ["--only", str(only)])
    launch = run_child(args, workdir / f"{tag}.log", env, gpu, timeout)
    with open(out, encoding="utf-8") as fh:
        return json.load(fh), launch


def run_rftui(job: dict, workdir: Path, tag: str, env: dict, gpu, timeout: float) -> tuple[dict, dict]:
    job = {**job, "name": tag, "workdir": str(workdir / "experiments")}
    job_path = workdir / f"{tag}-job.json"
    job_path.write_text(json.dumps(job))
    out = workdir / f"{tag}.json"
    launch = run_child([str(HERE / "rftui_one.py"), str(job_path), str(out)], workdir / f"{tag}.log", env, gpu,
                       timeout)
    with open(out, encoding="utf-8") as fh:
        res = json.load(fh)
    for sub in ("checkpoints", "adapters"):  # checkpoints of a large model add up; the logs stay
        shutil.rmtree(Path(res["workdir"]) / sub, ignore_errors=True)
    return res, launch


def measure_bandwidth(env: dict) -> dict | None:
    proc = subprocess.run([sys.executable, str(HERE / "hostdev.py")], capture_output=True, text=True, env=env,
                          timeout=300)
    if proc.returncode != 0:
        log(f"  bandwidth measurement failed: {proc.stderr[-500:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- one size


def median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def checkpoint_results(opts, partial: dict) -> None:
    """Write what has been measured so far (a run cut short still leaves its numbers)."""
    if opts.out:
        Path(opts.out).write_text(json.dumps(partial, indent=1, default=str))


def bench_size(size: Size, opts, root: Path, gpu: GpuMemory | None, partial: dict | None = None) -> dict:
    log(f"\n== {size.name}: {size.note}; N={size.n} configs, K={size.k} chunks, {size.max_steps} steps, "
        f"first-signal step s1={size.chunk1_end}, {size.repeats} round(s)")
    workdir = root / size.name
    workdir.mkdir(parents=True, exist_ok=True)
    threads = 0 if opts.device == "cuda" else opts.threads
    env = child_env(threads)
    model_name, model_path = prepare_model(size, root, opts.device)
    files = prepare_data(size, workdir)
    configs = grid_configs(size)
    model_kwargs = {"dtype": "auto", "use_cache": False}
    trl_job = {"model_path": model_path, "model_kwargs": model_kwargs, "configs": configs, "device": opts.device,
               "threads": threads, "seed": 42, "bf16": size.bf16, **files}
    trl_job_path = workdir / "trl-job.json"
    trl_job_path.write_text(json.dumps(trl_job))
    rftui_job = {"model_name": model_name, "model_kwargs": model_kwargs, "configs": configs, "device": opts.device,
                 "threads": threads, "seed": 42, "bf16": size.bf16, "num_chunks": size.k, **files}
    bytes_per_run = {c["run_id"]: adapter_optimizer_bytes(size, c["lora"]) for c in configs}
    bandwidth = None
    cuda = opts.device == "cuda"
    if cuda:
        bandwidth = measure_bandwidth(env)
        log(f"  host<->device bandwidth (pinned): {bandwidth}")
        rftui_job["adapter_budget_bytes"] = 1  # every switch offloads the previous run and loads the next
    timeout = opts.timeout
    rounds = []
    for rep in range(size.repeats):
        rnd: dict[str, Any] = {}
        rounds.append(rnd)
        log(f"  round {rep + 1}/{size.repeats}")

        def baseline_b():
            res, launch = run_trl(trl_job_path, workdir, f"b-{rep}", env, gpu, size, None, timeout)
            rnd["b"] = summarize_trl([res], [launch], size)
            log(f"    (b) one process:   wall {rnd['b']['wall']:7.1f}s  first signal {fmt(rnd['b']['first_signal'])}s")

        def rftui_n():
            res, launch = run_rftui(rftui_job, workdir, f"rftui-{rep}", env, gpu, timeout)
            rnd["rftui"] = summarize_rftui(res, launch, size, bytes_per_run if cuda else None, bandwidth)
            log(f"    rftui N={size.n}:        wall {rnd['rftui']['wall']:7.1f}s  first signal "
                f"{fmt(rnd['rftui']['first_signal'])}s  switch {100 * rnd['rftui']['switch_overhead_share']:.2f}%")

        def baseline_a():
            results, launches = [], []
            for i in range(size.n):
                res, launch = run_trl(trl_job_path, workdir, f"a-{rep}-{i}", env, gpu, size, i, timeout)
                results.append(res)
                launches.append(launch)
            rnd["a"] = summarize_trl(results, launches, size)
            log(f"    (a) {size.n} processes:   wall {rnd['a']['wall']:7.1f}s  first signal "
                f"{fmt(rnd['a']['first_signal'])}s")

        def rftui_one():
            one_job = {**rftui_job, "configs": configs[:1]}
            one_job.pop("adapter_budget_bytes", None)
            res, launch = run_rftui(one_job, workdir, f"rftui1-{rep}", env, gpu, timeout)
            rnd["rftui_1"] = summarize_rftui(res, launch, size)
            log(f"    rftui N=1:         wall {rnd['rftui_1']['wall']:7.1f}s  peak RSS {rnd['rftui_1']['peak_rss_mib']} "
                f"MiB (N={size.n}: {rnd.get('rftui', {}).get('peak_rss_mib')} MiB)")

        def rftui_resident():
            res, launch = run_rftui({**rftui_job, "adapter_budget_bytes": None}, workdir, f"rftuires-{rep}", env, gpu,
                                    timeout)
            rnd["rftui_resident"] = summarize_rftui(res, launch, size)
            log(f"    rftui resident:    wall {rnd['rftui_resident']['wall']:7.1f}s  switch "
                f"{100 * rnd['rftui_resident']['switch_overhead_share']:.2f}%")

        # On CPU: b, rftui, a, rftui-1 (the interleaving the brief asks for). On CUDA the cheap, most telling
        # measurements go first, so a run cut short by a lease still has them; (a) is the slowest, so it is last.
        steps = ([baseline_b, rftui_n, rftui_one, rftui_resident, baseline_a] if cuda
                 else [baseline_b, rftui_n, baseline_a, rftui_one])
        for step in steps:
            step()
            if partial is not None:
                partial.setdefault("partial_rounds", {})[size.name] = rounds
                checkpoint_results(opts, partial)
        r, b, a, one = rnd["rftui"], rnd["b"], rnd["a"], rnd["rftui_1"]
        ideal = (size.k * (size.n - 1) + 1) / size.n
        rnd["ratios"] = {
            "wall_ratio_vs_one_process": r["wall"] / b["wall"],
            "wall_ratio_vs_processes": r["wall"] / a["wall"],
            "first_signal_speedup": b["first_signal"] / r["first_signal"]
            if b["first_signal"] and r["first_signal"] else None,
            "first_signal_speedup_vs_processes": a["first_signal"] / r["first_signal"]
            if a["first_signal"] and r["first_signal"] else None,
            "first_signal_speedup_after_startup": b["first_signal_after_startup"] / r["first_signal_after_startup"]
            if b["first_signal_after_startup"] and r["first_signal_after_startup"] else None,
            "first_signal_ideal_from_launch": b["first_signal"] / (
                b["first_signal"] - b["first_signal_after_startup"] + b["first_signal_after_startup"] / ideal)
            if b["first_signal"] and b["first_signal_after_startup"] else None,
            "cpu_ratio_vs_one_process": r["cpu_seconds"] / b["cpu_seconds"] if b.get("cpu_seconds") else None,
            "cpu_ratio_vs_processes": r["cpu_seconds"] / a["cpu_seconds"] if a.get("cpu_seconds") else None,
            "switch_overhead_share": r["switch_overhead_share"],
            "switch_overhead_share_excl_final": r["switch_overhead_share_excl_final"],
            "memory_ratio": r["peak_rss_mib"] / one["peak_rss_mib"],
            "memory_ratio_pss": r["peak_pss_mib"] / one["peak_pss_mib"] if one["peak_pss_mib"] else None,
            "memory_vs_baseline_b": r["peak_rss_mib"] / b["peak_rss_mib"],
            "tokens_per_second_train_ratio_vs_b": (r["tokens_per_second_train"] / b["tokens_per_second_train"])
            if r["tokens_per_second_train"] and b["tokens_per_second_train"] else None,
            "max_abs_eval_loss_diff_at_s1_vs_b": max(
                (abs(r["eval_loss_at_s1"][k] - v) for k, v in b["eval_loss_at_s1"].items()
                 if v is not None and r["eval_loss_at_s1"].get(k) is not None), default=None),
        }
        if cuda and "rftui_resident" in rnd:
            rnd["ratios"]["switch_overhead_share_resident"] = rnd["rftui_resident"]["switch_overhead_share"]
        if partial is not None:
            checkpoint_results(opts, partial)
    keys = rounds[0]["ratios"].keys()
    summary = {k: median([rnd["ratios"][k] for rnd in rounds]) for k in keys}
    summary["first_signal_ideal"] = (size.k * (size.n - 1) + 1) / size.n
    detail = {}
    for who in rounds[0]:
        if who == "ratios":
            continue
        numeric = {k for k, v in rounds[0][who].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        detail[who] = {k: median([rnd[who][k] for rnd in rounds]) for k in sorted(numeric)}
    return {
        "size": {k: v for k, v in size.__dict__.items() if k != "extra"} | {"extra": size.extra,
                                                                             "chunk1_end": size.chunk1_end},
        "summary": summary, "medians": detail, "rounds": rounds,
        "adapter_optimizer_bytes": bytes_per_run, "bandwidth": bandwidth,
    }


# ----------------------------------------------------------------------------- output


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(results: dict) -> str:
    lines = []
    for name, res in results["sizes"].items():
        s, m = res["summary"], res["medians"]
        size = res["size"]
        lines.append(f"\n{name}: N={size['n']} K={size['k']} steps={size['max_steps']} rounds={size['repeats']}  "
                     f"({size['note']})")
        head = f"  {'':<22}{'(b) 1 proc':>12}{'(a) N procs':>12}{'rftui':>12}{'rftui N=1':>12}"
        lines.append(head)
        rows = [("wall s", "wall", 1), ("first signal s", "first_signal", 1),
                ("  after startup s", "first_signal_after_startup", 1), ("peak RSS MiB", "peak_rss_mib", 0),
                ("peak PSS MiB", "peak_pss_mib", 0), ("GPU peak MiB", "gpu_peak_mib", 0),
                ("CPU s (whole tree)", "cpu_seconds", 1),
                ("train tok/s", "tokens_per_second_train", 0), ("wall tok/s", "tokens_per_second_wall", 0)]
        for label, key, digits in rows:
            vals = [m.get(who, {}).get(key) for who in ("b", "a", "rftui", "rftui_1")]
            lines.append(f"  {label:<22}" + "".join(f"{fmt(v, digits):>12}" for v in vals))
        r = m["rftui"]
        lines.append(f"  rftui time: startup {fmt(r.get('startup_seconds'))}s, setup {fmt(r.get('setup_seconds'))}s, "
                     f"train {fmt(r.get('train_seconds'))}s, eval {fmt(r.get('eval_seconds'))}s, switch-in "
                     f"{fmt(r.get('switch_in_seconds'), 2)}s, switch-out {fmt(r.get('switch_out_seconds'), 2)}s, "
                     f"controller gaps {fmt(r.get('controller_gap_seconds'), 2)}s, close {fmt(r.get('close_seconds'))}s")
        lines.append(f"  switch per quantum: median {fmt(r.get('switch_median_ms'))} ms, p95 "
                     f"{fmt(r.get('switch_p95_ms'))} ms (in {fmt(r.get('switch_in_median_ms'))} / out "
                     f"{fmt(r.get('switch_out_median_ms'))} / gap {fmt(r.get('controller_gap_median_ms'))} ms medians)")
        if r.get("swap_floor_seconds_median_ms") is not None:
            lines.append(f"  swap: median {fmt(r.get('swap_seconds_median_ms'), 2)} ms vs floor "
                         f"{fmt(r.get('swap_floor_seconds_median_ms'), 3)} ms ({fmt(r.get('swap_over_floor'), 1)}x)")
        res_m = m.get("rftui_resident")
        if res_m:
            lines.append(f"  rftui with all adapters resident (no budget): wall {fmt(res_m.get('wall'))}s, switch share "
                         f"{fmt(100 * res_m['switch_overhead_share'], 2)}%, switch median "
                         f"{fmt(res_m.get('switch_median_ms'))} ms, p95 {fmt(res_m.get('switch_p95_ms'))} ms")
        if res.get("bandwidth"):
            bw = res["bandwidth"]
            ck = res["rounds"][0].get("rftui", {}).get("checkpoint_bytes", {})
            lines.append(f"  pinned copies: H2D {bw['h2d_bytes_per_s'] / 1e9:.1f} GB/s, D2H {bw['d2h_bytes_per_s'] / 1e9:.1f} "
                         f"GB/s; adapter+optimizer MB per run {', '.join(f'{k}={v / 1e6:.1f}' for k, v in res['adapter_optimizer_bytes'].items())}"
                         f"; checkpoint MB {', '.join(f'{k}={v / 1e6:.1f}' for k, v in ck.items())}")
        lines.append(f"  {'ratio':<44}{'measured':>10}{'target':>12}")
        targets = {"wall_ratio_vs_one_process": "<= 1.03", "wall_ratio_vs_processes": "< 1",
                   "cpu_ratio_vs_one_process": "(<= 1.03)", "cpu_ratio_vs_processes": "(< 1)",
                   "first_signal_speedup": f">= {0.9 * (s.get('first_signal_ideal_from_launch') or 0):.2f}",
                   "first_signal_speedup_after_startup": f">= {0.9 * s['first_signal_ideal']:.2f}",
                   "first_signal_ideal": "", "first_signal_ideal_from_launch": "", "switch_overhead_share": "< 0.02" if size["k"] and not res["bandwidth"]
                   else "< 0.01", "memory_ratio": "<= 1.3", "memory_ratio_pss": "<= 1.3",
                   "max_abs_eval_loss_diff_at_s1_vs_b": ""}
        for key, target in targets.items():
            lines.append(f"  {key:<44}{fmt(s.get(key), 3):>10}{target:>12}")
    return "\n".join(lines)


def machine_info(device: str) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    try:
        import torch
        import transformers
        import trl

        info.update(torch=torch.__version__, transformers=transformers.__version__, trl=trl.__version__)
        if device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001
        pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model, N=2, K=2, 8 steps, one round")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", default=None, help="JSON results file")
    parser.add_argument("--repeats", type=int, default=0, help="rounds per size (default: 3 tiny, 1 larger)")
    parser.add_argument("--sizes", default=None, help="comma-separated: tiny, large, tinyllama")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process on CPU (default 1)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per child process")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, raw results)")
    parser.add_argument("--n", type=int, default=0, help="override N (configs) of the chosen sizes")
    parser.add_argument("--k", type=int, default=0, help="override K (chunks) of the chosen sizes")
    parser.add_argument("--max-steps", dest="max_steps", type=int, default=0, help="override steps per config")
    parser.add_argument("--eval-steps", dest="eval_steps", type=int, default=0, help="override eval_steps")
    opts = parser.parse_args(argv)
    if opts.device == "cpu":
        os.environ.setdefault("OMP_NUM_THREADS", str(opts.threads))
    sizes = sizes_for(opts)
    root = Path(tempfile.mkdtemp(prefix="rftui-bench-"))
    gpu = GpuMemory(opts.device == "cuda")
    t0 = time.time()
    log(f"rftui benchmark: device {opts.device}, scratch {root}")
    results: dict[str, Any] = {"machine": machine_info(opts.device), "device": opts.device,
                               "command": " ".join([Path(sys.executable).name, *sys.argv]),
                               "formulas": FORMULAS, "sizes": {}}
    try:
        for size in sizes:
            results["sizes"][size.name] = bench_size(size, opts, root, gpu, results)
            results.get("partial_rounds", {}).pop(size.name, None)
            checkpoint_results(opts, results)
    finally:
        if opts.keep:
            log(f"scratch kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    primary = results["sizes"][sizes[0].name]["summary"]
    for key in ("wall_ratio_vs_one_process", "wall_ratio_vs_processes", "first_signal_speedup", "first_signal_ideal",
                "first_signal_ideal_from_launch",
                "first_signal_speedup_after_startup", "switch_overhead_share", "memory_ratio", "memory_ratio_pss"):
        results[key] = primary.get(key)
    results["primary_size"] = sizes[0].name
    results["total_seconds"] = round(time.time() - t0, 1)
    text = table(results)
    print(text, flush=True)
    log(f"\ntotal {results['total_seconds']}s")
    if opts.out:
        Path(opts.out).write_text(json.dumps(results, indent=1, default=str))
        log(f"results written to {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
