"""LoRA settings checked against a model's structure before anything trains: the model is built from its config
on the meta device (no weights are read or allocated) and PEFT is asked to attach each distinct LoRA config."""
from __future__ import annotations

import json
import warnings
from typing import Any

from rftui.config.experiment import ExperimentSpec
from rftui.config.problems import Problem


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


def lora_problems(spec: ExperimentSpec) -> list[Problem]:
    """One problem per (model, LoRA config) that PEFT cannot attach, naming the runs that use it."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for run in spec.runs:
        if run.lora is not None:
            groups.setdefault((run.model_name, json.dumps(dict(run.lora), sort_keys=True, default=str)), []).append(run)
    configs: dict[str, Any] = {}
    problems = []
    for (model_name, _), runs in groups.items():
        if model_name not in configs:
            configs[model_name] = model_config(model_name, runs[0].model_kwargs)
        config = configs[model_name]
        if config is None:
            continue
        error, linear = _attach(config, dict(runs[0].lora))
        if error is None:
            continue
        names = ", ".join(f"{r.run_id} ({r.label})" for r in runs)
        hint = f"{model_name}'s linear layers are named: {', '.join(linear)}" if linear else "see the model's modules"
        problems.append(Problem("lora", f"LoRA settings of run{'s' if len(runs) > 1 else ''} {names} do not fit "
                                        f"{model_name}: {error}", hint, spec.source_file))
    return problems


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
