"""Final model export: a finished run saved atomically where `PeftModel.from_pretrained` (or, for full
fine-tuning, `AutoModelForCausalLM.from_pretrained`) loads it."""
from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

from rftui.tracking.redact import redact
from rftui.training.run_state import RunState


def safe_name(run_id: str) -> str:
    """Adapter / directory name for a run id (PEFT adapter names must not contain dots)."""
    return re.sub(r"[^A-Za-z0-9_\-]", "_", run_id)


def export_final(run: RunState, adapters_root: str) -> str:
    """Write `<adapters_root>/<run_id>/` (adapter or model, tokenizer, rftui_run.json) via a temp dir + rename."""
    root = Path(adapters_root)
    root.mkdir(parents=True, exist_ok=True)
    dest = root / run.run_id
    tag = f"{safe_name(run.run_id)}-{uuid.uuid4().hex[:8]}"
    tmp = root / f".tmp-{tag}"
    try:
        if run.adapter_name is not None:
            run.model.save_pretrained(str(tmp), selected_adapters=[run.adapter_name])
            src = tmp / run.adapter_name if (tmp / run.adapter_name).is_dir() else tmp  # PEFT nests non-default
        else:
            run.model.save_pretrained(str(tmp))
            src = tmp
        run.trainer.processing_class.save_pretrained(str(src))
        (src / "rftui_run.json").write_text(json.dumps(  # secrets (a token in model_kwargs) never reach disk
            {"run": redact(run.spec.to_dict()), "steps": run.global_step}, indent=1, default=str), encoding="utf-8")
        staged = root / f".staged-{tag}"
        src.rename(staged)
        if dest.exists():
            old = root / f".old-{tag}"
            dest.rename(old)
            staged.rename(dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staged.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(dest)
