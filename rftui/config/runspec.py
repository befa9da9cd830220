"""RunSpec: one fully resolved training configuration, the unit the engine schedules."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from rftui.tracking.redact import MASK


def hook_name(hook: Any) -> str | None:
    """A printable, importable-looking name for a hook ("module:function")."""
    if hook is None or isinstance(hook, str):
        return hook
    module = getattr(hook, "__module__", "?")
    qualname = getattr(hook, "__qualname__", getattr(hook, "__name__", repr(hook)))
    return f"{module}:{qualname}"


@dataclass(frozen=True)
class RunSpec:
    """A single run after expansion: every knob has one plain value.

    `training` holds TRL `SFTConfig` keyword arguments, `lora` PEFT `LoraConfig` keyword
    arguments (None means full fine-tuning). `knobs` is the flat view used for labels, MLflow
    params and clone edits: keys like "training.learning_rate" or "lora.r".
    Hooks are "module:function" strings or, from the Python API, callables.
    """

    run_id: str
    label: str
    model_name: str
    training: Mapping[str, Any]
    lora: Mapping[str, Any] | None
    model_type: str = "causal_lm"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    tokenizer_kwargs: Mapping[str, Any] = field(default_factory=dict)
    generation: Mapping[str, Any] = field(default_factory=dict)
    formatting_func: Any = None
    compute_metrics: Any = None
    knobs: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (hooks become their names)."""
        return {
            "run_id": self.run_id,
            "label": self.label,
            "model_name": self.model_name,
            "model_type": self.model_type,
            "model_kwargs": dict(self.model_kwargs),
            "tokenizer": self.tokenizer,
            "tokenizer_kwargs": dict(self.tokenizer_kwargs),
            "training": dict(self.training),
            "lora": None if self.lora is None else dict(self.lora),
            "generation": dict(self.generation),
            "formatting_func": hook_name(self.formatting_func),
            "compute_metrics": hook_name(self.compute_metrics),
            "knobs": dict(self.knobs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunSpec":
        return cls(
            run_id=data["run_id"],
            label=data["label"],
            model_name=data["model_name"],
            model_type=data.get("model_type", "causal_lm"),
            model_kwargs=_unmasked(data.get("model_kwargs")),
            tokenizer=data.get("tokenizer"),
            tokenizer_kwargs=_unmasked(data.get("tokenizer_kwargs")),
            training=dict(data["training"]),
            lora=None if data.get("lora") is None else dict(data["lora"]),
            generation=dict(data.get("generation") or {}),
            formatting_func=data.get("formatting_func"),
            compute_metrics=data.get("compute_metrics"),
            knobs=dict(data.get("knobs") or {}),
        )


def _unmasked(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Stored kwargs without the secrets stored masked (a token): the library reads those from the environment
    (HF_TOKEN), as it did when the run was created."""
    return {k: v for k, v in dict(kwargs or {}).items() if v != MASK}
