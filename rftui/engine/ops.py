"""Interactive-control ops applied by the controller: legal transitions, refusals with reasons."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rftui.engine.messages import Preempt
from rftui.engine.runs import TERMINAL

if TYPE_CHECKING:
    from rftui.engine.controller import Controller

Result = tuple[str, "str | None", "str | None"]  # status, reason, new run id


def find_run(ctl: "Controller", run_id: str | None):
    """A run by id (`r3`), bare number (`3`, also the int 3 from Python) or exact label."""
    if run_id is None or isinstance(run_id, bool):
        return None
    run_id = str(run_id)  # an int from the Python API must not reach str methods (it would crash the loop)
    if run_id in ctl.runs:
        return ctl.runs[run_id]
    if run_id.isdigit() and f"r{run_id}" in ctl.runs:
        return ctl.runs[f"r{run_id}"]
    matches = _label_matches(ctl, run_id)
    return ctl.runs[matches[0]] if len(matches) == 1 else None


def op_target(ctl: "Controller", run_id: Any) -> str | None:
    """How an op's log line names its run: the id it resolved to, with the run's label when the user
    named it by number or label (`r4 (r=8 lr=1e-4)`); None when it names no run."""
    rec = find_run(ctl, run_id)
    if rec is None:
        return None
    return rec.run_id if str(run_id) == rec.run_id or not rec.spec.label else f"{rec.run_id} ({rec.spec.label})"


def target_id(shown: str | None, labels: dict[str, str]) -> str | None:
    """The run id in an op's `run_id` as op_target wrote it (`r4`, `r4 (r=8 lr=1e-4)`), given the experiment's
    runs as {id: label}; None where the op named no run it could resolve (it keeps what was typed)."""
    if shown is None:
        return None
    if shown in labels:
        return shown
    run_id, _, rest = shown.partition(" (")
    return run_id if run_id in labels and labels[run_id] and rest == f"{labels[run_id]})" else None


def _trains_later(ctl: "Controller") -> str | None:
    """For an op on a stored experiment (no process trains it) that leaves work to train: what trains it."""
    if ctl.pool is not None:
        return None
    return f"no process is training experiment {ctl.spec.name}; `{ctl.exp.resume_command}` trains it"


def _label_matches(ctl: "Controller", label: Any) -> list[str]:
    """The ids of the runs whose label is exactly `label` (clones share their source's label)."""
    return [r.run_id for r in ctl.runs.values() if r.spec.label == str(label)]


def _unknown_run(ctl: "Controller", run_id: Any) -> str:
    matches = _label_matches(ctl, run_id)
    if len(matches) > 1:
        return f"label {str(run_id)!r} names {len(matches)} runs ({', '.join(matches)}); give the run id"
    return f"no run {run_id!r} in experiment {ctl.spec.name} (runs: {', '.join(ctl.runs) or 'none'})"


def apply(ctl: "Controller", op: str, run_id: str | None, args: dict[str, Any], out: list[Any]) -> Result:
    handler = _HANDLERS.get(op)
    if handler is None:
        return "refused", f"unknown op {op!r} (use one of: {', '.join(_HANDLERS)})", None
    if run_id is None or str(run_id).strip() == "":
        return "refused", f"{op} needs a run id (runs: {', '.join(ctl.runs) or 'none'})", None
    rec = find_run(ctl, run_id)
    if rec is None:
        return "refused", _unknown_run(ctl, run_id), None
    return handler(ctl, rec, args, out)


def _stop(ctl, rec, args, out) -> Result:
    if rec.status in TERMINAL or rec.status == "stopped":
        return "refused", f"run {rec.run_id} is {rec.status}; only pending, waiting or running runs can be stopped", None
    if rec.status == "running":
        if rec.pending_preempt == "delete":
            return "refused", f"run {rec.run_id} is being deleted (at its next optimizer step)", None
        if rec.pending_preempt is None:
            rec.pending_preempt = "stop"
            ctl.pool.send(rec.worker_id, Preempt(rec.run_id, "stop"))
        return "applied", "stops at its next optimizer step", None
    ctl.scheduler.on_run_paused(rec.run_id)
    ctl._set_status(rec, "stopped", out)
    return "applied", None, None


# Hints name the kind of clone, not a front end's flag or key: the CLI, the TUI and the Python API all show them.
_RESUME_HINTS = {
    "completed": "; to train it further, make a warm-start clone of it with a larger max_steps",
    "failed": "; clone it to try again",
    "deleted": "; clone it to train its config again",
}


def _resume(ctl, rec, args, out) -> Result:
    if rec.status != "stopped":
        hint = _RESUME_HINTS.get(rec.status, "")
        if rec.status == "failed" and rec.reason:  # the reason itself: every front end can show it
            reason = rec.reason if len(rec.reason) <= 160 else rec.reason[:159] + "…"
            hint += f" (it failed: {reason})"
        elif rec.status == "running" and rec.pending_preempt == "stop":
            hint = "; it stops at its next optimizer step: resume it after that"
        elif ctl.pool is None and rec.status in ("pending", "waiting"):  # no process trains the experiment
            hint = f"; it trains when the experiment does: `{ctl.exp.resume_command}`"
        return "refused", f"run {rec.run_id} is {rec.status}; only stopped runs can be resumed{hint}", None
    ctl.scheduler.on_run_resumed(rec.run_id)
    ctl._set_status(rec, "waiting", out, reason="")
    ctl.reopen()  # it ended with this run stopped: `rftui resume` trains it
    return "applied", _trains_later(ctl), None


def _delete(ctl, rec, args, out) -> Result:
    if rec.status == "deleted":
        return "refused", f"run {rec.run_id} is already deleted", None
    if rec.status == "running":
        rec.pending_preempt = "delete"
        ctl.pool.send(rec.worker_id, Preempt(rec.run_id, "delete"))
        return "applied", "deleted at its next optimizer step", None
    ctl._delete(rec, out)
    return "applied", None, None


_HANDLERS = {"stop": _stop, "resume": _resume, "delete": _delete}


# A warm start loads the source's adapter tensors and optimizer moments as they are. These LoRA knobs only
# scale or regularise that adapter; every other one may add, drop or reshape its tensors (use_dora's
# magnitudes, layers_to_transform, bias, ...), so the clone could not load them.
WARM_LORA_FREE = ("lora_alpha", "lora_dropout", "use_rslora", "alpha_pattern")
# PEFT's LoraConfig defaults, so that writing a knob's default value out is no change.
_LORA_DEFAULTS = {"r": 8, "bias": "none", "use_dora": False, "lora_bias": False, "fan_in_fan_out": False,
                  "use_qalora": False, "init_lora_weights": True, "rank_pattern": {}}
_DEFAULT_OPTIMS = ("adamw_torch", "adamw_torch_fused")  # transformers' default `optim`, by torch version


def warm_fixed_edits(lora: dict[str, Any] | None, training: dict[str, Any], edits: dict[str, Any]) -> list[str]:
    """The edits a warm start cannot take: they change the adapter's tensors or the optimizer's state layout.
    `lora` and `training` are the source run's LoRA config (None: full fine-tuning) and training arguments."""
    from rftui.config.rules import coerce, known_args

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return sorted(map(str, a)) == sorted(map(str, b))
        return a == b or (a in (None, {}, []) and b in (None, {}, []))

    fixed = []
    for name, value in edits.items():
        if name.startswith("lora.") and name[5:] not in WARM_LORA_FREE and lora is not None:
            arg = name[5:]
            before = lora.get(arg, _LORA_DEFAULTS.get(arg))
            if not same(coerce(known_args("lora").get(arg, "any"), value), before):
                fixed.append(name)
        elif name == "optim":
            before = training.get("optim")
            if value != before and not (before is None and value in _DEFAULT_OPTIMS):
                fixed.append(name)
    return sorted(fixed)


def warm_fixed_reason(fixed: list[str], run: str = "the run") -> str:
    """Why a warm start refuses `fixed` (warm_fixed_edits' answer) and what to do: the controller's
    refusal and the TUI clone dialog's problem, in the same words."""
    what = "adapter and optimizer as they are" if "optim" in fixed else "adapter as it is"
    return (f"a warm start continues {run}'s {what}; {', '.join(fixed)} cannot change "
            f"(only lora.{', lora.'.join(WARM_LORA_FREE)} and training hyperparameters can; "
            f"a clone from scratch can change {'them' if len(fixed) > 1 else 'it'})")


def no_checkpoint_reason(run: str, status: str, cold: str = "clone it from scratch instead",
                         resume: str = "resume it") -> str:
    """Why a warm start from `run` (no checkpoint yet) is refused and what to do, by its status: only a run
    that still trains gets a checkpoint by waiting. The controller's refusal and the TUI's, in the same words;
    the TUI passes `cold` and `resume` with its key hints."""
    if status in ("pending", "waiting", "running"):
        return f"{run} has no checkpoint yet to warm-start from: wait for its first chunk, or {cold}"
    if status == "stopped":
        return f"{run} was stopped before its first checkpoint: {resume} and wait for its first chunk, or {cold}"
    if status == "failed":
        return f"{run} failed before its first checkpoint: there is nothing to warm-start from; {cold}"
    return f"{run} is {status} and has no checkpoint to warm-start from; {cold}"


def parse_edits(raw: Any) -> tuple[dict[str, Any], list[str]]:
    """Edits as {knob: value}; values given as text (`--set lr=5e-4`) are read as YAML scalars.

    A dict's values are taken as they are (`{"run_name": "a: b"}` is that string, not a mapping).
    Text without a value (`learning_rate`, `learning_rate=`) is refused; an explicit null
    (`learning_rate=null`, or None in a dict) is kept, for validation to accept only where the knob allows it.
    """
    import yaml

    if raw is None:
        return {}, []
    if isinstance(raw, dict):
        items = [(key, value, None) for key, value in raw.items()]
    else:
        items = [(*str(item).partition("=")[::2], str(item)) for item in raw]
    edits, problems, given = {}, [], {}
    for key, value, text in items:
        key = str(key).strip()
        name = key.removeprefix("training.")
        said = f"--set {text.strip()}" if text is not None else repr(key)
        if name in given:  # the last would win without a word
            problems.append(f"{name} is given twice ({given[name]}, {said}); keep one")
            continue
        given[name] = said
        if not key:
            problems.append(f"edit {value!r} has no knob name; write knob=value, e.g. learning_rate=5e-4")
            continue
        if isinstance(value, str):
            if not value.strip():
                problems.append(f"--set {text.strip()} needs a value: KNOB=VALUE" if text is not None
                                else f"{key}: needs a value")
                continue
            if text is not None:  # only command-line text is YAML; a dict's string is the value itself
                try:
                    value = yaml.safe_load(value)
                except yaml.YAMLError:
                    problems.append(f"{key}: cannot read value {value!r}")
                    continue
        edits[name] = value
    return edits, problems


def short_name_problems(edits: dict[str, Any], assign: str = "=") -> list[str]:
    """Edits named by a label's short name (`lr=5e-4`, as a run's label shows it): say the knob's own name.
    They are taken out of `edits`. `assign` writes the example as the front end takes it (`=` for --set and
    the API's list form, `: ` for the TUI clone dialog's YAML)."""
    from rftui.config.expand import _SHORT_NAMES
    from rftui.config.rules import knob_section, known_args

    def known(knob: str) -> bool:  # labels also name knobs this transformers lacks (warmup_ratio)
        section, arg = knob_section(knob)
        return arg in known_args(section)

    problems = []
    for name in list(edits):
        full = [knob for knob, short in _SHORT_NAMES.items() if short == name and knob != "model_name" and known(knob)]
        if full and name not in known_args("training"):
            value = edits.pop(name)
            problems.append(f"{name}: `{name}` is a label's short name; write {' or '.join(full)} "
                            f"(e.g. {full[0]}{assign}{value})")
    return problems


def edited_spec(source, edits: dict[str, Any], run_id: str):
    """A RunSpec for the clone: the source's config with the edits applied."""
    from dataclasses import replace

    from rftui.config.expand import format_value, short_name
    from rftui.config.rules import coerce, known_args, knob_section

    training, lora = dict(source.training), None if source.lora is None else dict(source.lora)
    generation, knobs = dict(source.generation), dict(source.knobs)
    for name, value in edits.items():
        section, arg = knob_section(name)
        value = coerce(known_args(section).get(arg, "any"), value)
        {"training": training, "lora": lora, "generation": generation}[section][arg] = value
        knobs[name if section != "training" else arg] = value
    tokens = dict(token.split("=", 1) for token in source.label.split() if "=" in token)
    for name, value in edits.items():
        tokens[short_name(name)] = format_value(value)
    label = " ".join(f"{k}={v}" for k, v in tokens.items()) or f"clone of {source.run_id}"
    return replace(source, run_id=run_id, label=label, training=training, lora=lora,
                   generation=generation, knobs=knobs)


def _clone(ctl, rec, args, out) -> Result:
    import shutil

    from rftui.config.experiment import total_steps
    from rftui.config.generation import greedy_note, ignored_sampling_keys
    from rftui.config.validate import half_precision_problem, validate_knobs
    from rftui.engine.runs import RunRecord

    warm = bool(args.get("warm_start") or args.get("warm"))
    edits, problems = parse_edits(args.get("edits") or args.get("set"))
    problems += short_name_problems(edits)
    problems += [str(p) for p in validate_knobs(edits)]
    if rec.spec.lora is None and any(k.startswith("lora.") for k in edits):
        problems.append(f"run {rec.run_id} is full fine-tuning; it has no LoRA knobs to edit")
    if problems:
        return "refused", "bad edit: " + "; ".join(problems), None
    if warm:
        if rec.checkpoint_dir is None:
            return "refused", no_checkpoint_reason(f"run {rec.run_id}", rec.status), None
        fixed = warm_fixed_edits(rec.spec.lora, rec.spec.training, edits)
        if fixed:
            return "refused", warm_fixed_reason(fixed, f"run {rec.run_id}"), None
    new_id = f"r{max((int(r.run_id[1:]) for r in ctl.runs.values() if r.run_id[1:].isdigit()), default=0) + 1}"
    spec = edited_spec(rec.spec, edits, new_id)
    half = half_precision_problem("fp16", spec.training.get("fp16"), spec.lora, spec.model_kwargs, "", "")
    if half is not None:  # a clone keeps its source's model dtype: only the edit can give way
        return "refused", f"bad edit: {half.message}; leave fp16 off or use bf16 where the GPU supports it", None
    total = total_steps(spec.training, ctl.store.get_meta("train_rows"))
    steps_done = rec.steps_done if warm else 0
    if total is None:
        return "refused", "the clone's number of steps is unknown: set max_steps (e.g. max_steps=64)", None
    if total <= steps_done:
        return "refused", (f"the clone would have {total} optimizer steps, and run {rec.run_id}'s state it starts from "
                           f"has done {steps_done}: raise max_steps (e.g. max_steps={2 * steps_done}) or "
                           "num_train_epochs"), None
    if total < rec.num_chunks:  # the config file's rule: every chunk needs a step
        return "refused", (f"the clone would have {total} optimizer step{'s' if total != 1 else ''}, fewer than "
                           f"num_chunks={rec.num_chunks}: give it at least {rec.num_chunks} "
                           f"(e.g. max_steps={rec.num_chunks})"), None
    warm_from = None
    if warm:
        target = ctl.exp.checkpoints / new_id / "warm-source"
        try:
            shutil.copytree(rec.checkpoint_dir, target)  # the source may prune its own copy later
        except OSError as exc:
            shutil.rmtree(target.parent, ignore_errors=True)
            return "refused", f"cannot copy run {rec.run_id}'s checkpoint for the warm start: {exc}", None
        warm_from = str(target)
    clone = RunRecord(spec=spec, ord=ctl.store.next_run_ord(), status="pending", total_steps=total,
                      num_chunks=rec.num_chunks, steps_done=steps_done,
                      chunks_done=rec.chunks_done if warm else 0, parent=rec.run_id, warm_start=warm,
                      warm_from=warm_from)
    if warm:
        clone.chunks_done = sum(1 for _, end in clone.bounds if end <= steps_done)
    ctl.store.add_run(new_id, ord=clone.ord, label=spec.label, spec={**spec.to_dict(), "warm_from": warm_from},
                      total_steps=total, num_chunks=clone.num_chunks, status="pending", parent=rec.run_id,
                      warm_start=warm)
    ctl.store.update_run(new_id, **clone.store_fields())
    ctl.add_run(clone, out)
    ignored = ignored_sampling_keys(spec.generation, [k.removeprefix("generation.") for k in edits
                                                      if k.startswith("generation.")])
    notes = [greedy_note(ignored) if ignored else None, _trains_later(ctl)]
    return "applied", "; ".join(n for n in notes if n) or None, new_id


_HANDLERS["clone"] = _clone
KNOWN_OPS = tuple(_HANDLERS)
