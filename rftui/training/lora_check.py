"""LoRA settings checked against a model's structure before anything trains: the model is built from its config
on the meta device (no weights are read or allocated) and PEFT is asked to attach each distinct LoRA config.
Verdicts are kept (rftui.training.lora_memo): a grid checked once is checked again without importing torch."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from rftui.config.experiment import ExperimentSpec
from rftui.config.problems import ConfigError, Problem
from rftui.training import lora_memo


def model_config(model_name: str, model_kwargs: dict | None = None) -> Any | None:
    """The model's transformers config, from the built-in recipe or from files already here; None when it cannot be
    read without a download (the check is skipped; loading the model says what is wrong)."""
    from rftui.training.builtin_model import is_builtin, recipe_config

    if is_builtin(model_name):
        return recipe_config(vocab_size=256)  # the vocabulary does not change which modules there are
    from transformers import AutoConfig

    kwargs = {k: v for k, v in dict(model_kwargs or {}).items() if k in ("trust_remote_code", "revision")}
    try:
        return AutoConfig.from_pretrained(model_name, local_files_only=True, **kwargs)
    except Exception:  # not in the local cache, or an odd config: nothing to check against here
        return None


def check_lora(spec: ExperimentSpec) -> None:
    """What `rftui plan`, `rftui run` and run_fit refuse before creating anything: LoRA settings that the runs'
    models cannot take (with a create_model hook the model is the hook's, so there is nothing to check)."""
    if spec.create_model is None and any(run.lora is not None for run in spec.runs):
        problems = lora_problems(spec)
        if problems:
            raise ConfigError(problems)


def lora_problems(spec: ExperimentSpec) -> list[Problem]:
    """One problem per (model, LoRA config) that PEFT cannot attach, naming the runs that use it and where the
    settings are written."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for run in spec.runs:
        if run.lora is not None:
            groups.setdefault((run.model_name, json.dumps(dict(run.lora), sort_keys=True, default=str)), []).append(run)
    configs: dict[str, Any] = {}
    problems = []
    for (model_name, _), runs in groups.items():
        lora = dict(runs[0].lora)
        verdict = _verdict(model_name, runs[0].model_kwargs, lora, configs)
        if verdict is None or verdict[0] is None:
            continue
        error, linear = verdict
        names = ", ".join(f"{r.run_id} ({r.label})" for r in runs)
        hint = f"{model_name}'s linear layers are named: {', '.join(linear)}" if linear else "see the model's modules"
        key = "target_modules" if "target" in error.lower() else None
        where = lora_path(spec.source_file, lora, key) if spec.source_file else "peft_config"
        problems.append(Problem(where, f"LoRA settings of run{'s' if len(runs) > 1 else ''} {names} do not fit "
                                       f"{model_name}: {error}", hint, spec.source_file))
    return problems


def _verdict(model_name: str, model_kwargs: Any, lora: dict, configs: dict[str, Any]
             ) -> tuple[str | None, list[str]] | None:
    """A kept verdict, else PEFT's (kept for next time); None when the model's config is not here."""
    key = lora_memo.memo_key(model_name, model_kwargs, lora)
    kept = lora_memo.recall(key) if key else None
    if kept is not None:
        return kept
    if model_name not in configs:
        configs[model_name] = model_config(model_name, model_kwargs)
    if configs[model_name] is None:
        return None
    verdict = _attach(configs[model_name], lora)
    if key:
        lora_memo.remember(key, verdict)
    return verdict


def lora_path(source_file: str, lora: dict, key: str | None) -> str:
    """Where in the config file a run's LoRA settings (or their `key`) are written: the grid's (or random
    search's) item or axis, else the top-level `lora:` section, which grid items extend."""
    import yaml

    try:
        doc = yaml.safe_load(Path(source_file).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        doc = None
    if not isinstance(doc, dict):
        return "lora"
    space = "random" if "random" in doc else "grid"
    given = doc[space].get("lora") if isinstance(doc.get(space), dict) else None
    top = doc.get("lora") if isinstance(doc.get("lora"), dict) else {}
    item = None
    if isinstance(given, list):  # the item the run's settings came from: the one most of them agree with
        items = [(i, entry) for i, entry in enumerate(given) if isinstance(entry, dict)]
        ranked = sorted(items, key=lambda pair: -sum(lora.get(k) == v for k, v in pair[1].items()))
        item = ranked[0] if ranked else None
    if key is not None:
        if item is not None and key in item[1]:
            return f"{space}.lora[{item[0]}].{key}"
        if isinstance(given, dict) and key in given:
            return f"{space}.lora.{key}"
        if key in top:
            return f"lora.{key}"
    if item is not None:
        return f"{space}.lora[{item[0]}]"
    return f"{space}.lora" if isinstance(given, dict) else "lora"


def _attach(config: Any, lora: dict) -> tuple[str | None, list[str]]:
    """(PEFT's complaint or None, the distinct names of the model's linear layers)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_config(config)
        names = [name for name, _ in model.named_modules()]
        linear = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                         if isinstance(module, torch.nn.Linear)})
        try:
            get_peft_model(model, LoraConfig(**{"task_type": "CAUSAL_LM", **lora}))
        except (ValueError, TypeError, KeyError) as exc:
            return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}", linear
    missing = missing_targets(names, lora.get("target_modules"))
    return (f"target_modules {', '.join(missing)} match no module of the model" if missing else None), linear


def missing_targets(module_names: list[str], targets: Any) -> list[str]:
    """Names in a list of target modules that match no module. PEFT is content when one name matches, so a
    misspelt other one would silently train fewer layers than asked. (A string is a regex: PEFT checks it.)"""
    if not isinstance(targets, (list, tuple, set)):
        return []
    return [str(t) for t in targets if not any(n == t or n.endswith(f".{t}") for n in module_names)]
