"""Loading a model and its tokenizer by name: a built-in name, a local directory or a Hub id.

Works without a network: a built-in name is built locally (rftui.training.builtin_model), a Hub
id is read from the local cache when the Hub is unreachable or offline mode is on, and every
failure becomes a ModelLoadError that says which name failed and what to do.
"""
from __future__ import annotations

import os
import time
from rftui.errors import ModelLoadError
from rftui.training.builtin_model import PAD_TOKEN, TINY_LLAMA, quiet_loading, is_builtin, resolve_model_path

_DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}


def portable_model_kwargs(model_kwargs: dict) -> dict:
    """Model kwargs as plain values that the experiment's config and state.db can keep and a resume reads back:
    a torch dtype becomes its name (`torch.bfloat16` -> "bfloat16") and a transformers config object such as
    BitsAndBytesConfig its dict (from_pretrained takes `quantization_config` as a dict). No torch import."""
    import json

    def plain(value):
        kind = type(value)
        if kind.__module__ == "torch" and kind.__name__ == "dtype":
            return str(value).removeprefix("torch.")
        if kind.__module__.startswith("transformers") and callable(getattr(value, "to_dict", None)):
            return json.loads(json.dumps(value.to_dict(), default=str))
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dict(model_kwargs))


def unportable_kwargs(model_kwargs: dict) -> list[str]:
    """Keys of model kwargs whose values stay objects after `portable_model_kwargs` (they cannot be stored)."""
    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(k, str) and plain(v) for k, v in value.items())
        if isinstance(value, (list, tuple)):
            return all(plain(v) for v in value)
        return value is None or isinstance(value, (str, int, float, bool))

    return [key for key, value in portable_model_kwargs(model_kwargs).items() if not plain(value)]


def dtype_problem(model_kwargs: object) -> tuple[str, str] | None:
    """(key, message) when `torch_dtype`/`dtype` of model kwargs names no dtype the loader knows, else None.
    Checked when a config is read, so a typo fails there and not in every run's worker."""
    if not isinstance(model_kwargs, dict):
        return None
    for key in ("torch_dtype", "dtype"):
        value = model_kwargs.get(key)
        if value is None or value == "auto" or type(value).__module__ == "torch":
            continue  # a torch dtype object is fine (stored by name)
        if not isinstance(value, str) or value.lower().removeprefix("torch.") not in _DTYPE_NAMES:
            return key, f"unknown model dtype {value!r}; use one of auto, float32, bfloat16, float16"
    return None


def model_dtype_name(model_kwargs: object) -> str | None:
    """The dtype model kwargs load the model in: "float32", "float16", "bfloat16", "auto", or None when unset or
    not one the loader knows. `dtype` wins over `torch_dtype`, as in `_translate_model_kwargs`. No torch import."""
    if not isinstance(model_kwargs, dict):
        return None
    value = model_kwargs.get("dtype", model_kwargs.get("torch_dtype"))
    if value is None:
        return None
    name = str(value).lower().removeprefix("torch.")  # a torch dtype object reads "torch.float16"
    return "auto" if name == "auto" else _DTYPE_NAMES.get(name)


def _translate_model_kwargs(model_kwargs: dict | None) -> dict:
    """Adapt user `from_pretrained` kwargs to this worker: what cannot apply without CUDA is dropped (a CPU worker
    sees no GPU, see engine/worker.py), and on CUDA a `device_map` means the worker's one GPU."""
    import torch

    kwargs = dict(model_kwargs or {})
    has_cuda = torch.cuda.is_available()

    if "torch_dtype" in kwargs:  # transformers 5 renamed it
        value = kwargs.pop("torch_dtype")
        kwargs.setdefault("dtype", value)
    dtype = kwargs.get("dtype")
    if isinstance(dtype, str) and dtype != "auto":
        key = dtype.lower().removeprefix("torch.")
        if key not in _DTYPE_NAMES:
            raise ModelLoadError(f"Unknown model dtype {dtype!r}; use one of auto, float32, bfloat16, float16.")
        dtype = getattr(torch, _DTYPE_NAMES[key])
    if not has_cuda and dtype is torch.float16:
        dtype = torch.float32  # fp16 training on CPU is unsupported/unstable
    if dtype is not None:
        kwargs["dtype"] = dtype

    quantized = any(kwargs.get(key) for key in ("quantization_config", "load_in_4bit", "load_in_8bit"))
    if has_cuda and ("device_map" in kwargs or quantized):
        # A worker trains on its one visible GPU: the whole model goes there, straight from the files.
        kwargs["device_map"] = {"": 0}
    if not has_cuda:
        kwargs.pop("device_map", None)
        for key in ("quantization_config", "load_in_4bit", "load_in_8bit"):
            kwargs.pop(key, None)  # bitsandbytes quantization needs a GPU
        if str(kwargs.get("attn_implementation", "")).startswith("flash_attention"):
            kwargs.pop("attn_implementation")
    return kwargs


def _offline_env() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE as set now (huggingface_hub reads them only at import)."""
    if any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except Exception:  # pragma: no cover - huggingface_hub always ships with transformers
        return False


_HUB_PROBE: dict[str, tuple[float, bool]] = {}
_HUB_PROBE_TTL_S = 60.0


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub endpoint accepts a TCP connection (cached for a minute).

    Without this, an unreachable hub costs ~45 s of retries per file before transformers gives up.
    Behind an HTTP(S) proxy a direct connection proves nothing, so the hub is assumed reachable.
    """
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:  # pragma: no cover
        endpoint = "https://huggingface.co"
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    key = f"{host}:{port}"
    now = time.monotonic()
    cached = _HUB_PROBE.get(key)
    if cached is not None and now - cached[0] < _HUB_PROBE_TTL_S:
        return cached[1]
    try:
        with socket.create_connection((host, port), timeout=timeout):
            ok = True
    except OSError:
        ok = False
    _HUB_PROBE[key] = (now, ok)
    return ok


hub_reachable = _hub_reachable  # for the data loader, which has the same question about Hub datasets


def _is_local_path_name(name: str) -> bool:
    """Whether `name` is meant as a filesystem path rather than a hub id ("org/model")."""
    if name.startswith(("/", "./", "../", "~")) or name in {".", ".."} or os.path.exists(os.path.expanduser(name)):
        return True
    parts = name.split("/")
    return not (1 <= len(parts) <= 2 and all(parts))


def _load_error(name: str, what: str, exc: BaseException | None, reason: str) -> ModelLoadError:
    """`reason`: "local" (a path), "offline" (offline mode set), "unreachable" (no hub), "hub", or "kwargs" (the
    model was found but its keyword arguments do not fit it)."""
    detail = " ".join(str(exc).split()) if exc is not None else ""
    if len(detail) > 300:
        detail = detail[:297] + "..."
    detail = f" ({detail})" if detail else ""
    if reason == "kwargs" or (reason == "local" and is_builtin(name)):  # the files are there: the settings failed
        return ModelLoadError(
            f"Cannot load {what} {name!r} with its settings{detail}. Fix or remove the model kwargs that do not "
            "apply to it (model.kwargs in a config file, model_kwargs from Python)."
        )
    if reason == "local":
        if not os.path.exists(os.path.expanduser(name)):
            return ModelLoadError(
                f"Cannot load {what} {name!r}: no such directory. Give the path of a directory saved with "
                f"save_pretrained, a Hugging Face model id, or the built-in model {TINY_LLAMA!r}."
            )
        return ModelLoadError(
            f"Cannot load {what} {name!r} from that local directory{detail}. Check that it holds a model saved "
            f"with save_pretrained and that the model kwargs apply to it, or use the built-in model {TINY_LLAMA!r}."
        )
    where = {
        "offline": "it is not in the local Hugging Face cache and offline mode (HF_HUB_OFFLINE) is set",
        "unreachable": "it is not in the local Hugging Face cache and the Hugging Face Hub cannot be reached",
    }.get(reason, "it was not found in the local Hugging Face cache or on the Hugging Face Hub")
    return ModelLoadError(
        f"Cannot load {what} {name!r}: {where}{detail}. To fix it: download it while online "
        f"(`huggingface-cli download {name}`), give a local directory saved with save_pretrained instead, "
        f"or use the built-in model {TINY_LLAMA!r}, which needs no network."
    )


def _from_pretrained(loader, name: str, path: str, what: str, kwargs: dict):
    """`loader.from_pretrained(path, **kwargs)` with failures turned into a `ModelLoadError`."""
    kwargs = dict(kwargs)
    if is_builtin(name) or _is_local_path_name(path):
        reason = "local"
        path = os.path.expanduser(path)
    elif kwargs.get("local_files_only") or _offline_env():
        reason = "offline"
        kwargs["local_files_only"] = True  # honour offline mode even when it was set after import
    elif not _hub_reachable():
        reason = "unreachable"
        kwargs["local_files_only"] = True  # use the cache, without retrying the network for a minute
    else:
        reason = "hub"
    if kwargs.get("local_files_only") and reason != "local" and hasattr(loader, "from_config"):
        # transformers' adapter lookup does not inherit local_files_only and would retry the network
        kwargs["adapter_kwargs"] = {**(kwargs.get("adapter_kwargs") or {}), "local_files_only": True}
    try:
        return loader.from_pretrained(path, **kwargs)
    except ModelLoadError:
        raise
    except TypeError as exc:  # an unknown keyword reached the model's constructor
        raise _load_error(name, what, exc, "kwargs") from exc
    except (OSError, ValueError, KeyError, ImportError) as exc:
        raise _load_error(name, what, exc, reason) from exc


def load_model_and_tokenizer(
    name: str,
    model_kwargs: dict | None = None,
    tokenizer_name: str | None = None,
    tokenizer_kwargs: dict | None = None,
):
    """Load `(model, tokenizer)` for a built-in name, a Hugging Face id or a local directory.

    `model_kwargs` go to `AutoModelForCausalLM.from_pretrained`, minus what cannot apply on this
    machine (see `_translate_model_kwargs`); `tokenizer_kwargs` go to `AutoTokenizer.from_pretrained`,
    over what it shares with the model's (trust_remote_code, revision, token, ...). The tokenizer always has a pad token (the eos token when
    it had none). Raises `ModelLoadError` naming the model and the fixes when it is neither cached
    nor reachable.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise ModelLoadError(f"No model given (got {name!r}); use a Hugging Face id, a local path or {TINY_LLAMA!r}.")
    name = str(name).strip()
    tok_name = str(tokenizer_name).strip() if tokenizer_name else name
    kwargs = _translate_model_kwargs(model_kwargs)
    tok_kwargs = {
        k: kwargs[k]
        for k in ("trust_remote_code", "revision", "cache_dir", "token", "local_files_only")
        if k in kwargs and not (tokenizer_name and k == "revision")
    }
    tok_kwargs.update(tokenizer_kwargs or {})

    with quiet_loading():
        model = _from_pretrained(AutoModelForCausalLM, name, resolve_model_path(name), "model", kwargs)
        tokenizer = _from_pretrained(
            AutoTokenizer,
            tok_name,
            resolve_model_path(tok_name),
            "tokenizer" if tokenizer_name else "the tokenizer of model",
            tok_kwargs,
        )

    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
            model.resize_token_embeddings(len(tokenizer))
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    gen_cfg = getattr(model, "generation_config", None)
    if gen_cfg is not None and getattr(gen_cfg, "pad_token_id", None) is None:
        gen_cfg.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def check_model_available(name: str, what: str = "model") -> None:
    """Raise ModelLoadError now, before anything trains, when `name` cannot be loaded here.

    A built-in name always can; a path must be a directory; a hub id must be in the local
    Hugging Face cache or the hub must be reachable (and offline mode off).
    """
    if is_builtin(name):
        return
    if _is_local_path_name(name):
        path = os.path.expanduser(name)
        if not os.path.isdir(path):
            raise _load_error(name, what, None, "local")
        tokenizer = what == "tokenizer"
        marker = "tokenizer_config.json" if tokenizer else "config.json"
        markers = ("tokenizer_config.json", "tokenizer.json") if tokenizer else ("config.json", "adapter_config.json")
        if not any(os.path.isfile(os.path.join(path, f)) for f in markers):
            # every run would fail in its worker: say so before the experiment is created
            raise ModelLoadError(
                f"Cannot load {what} {name!r}: that directory has no {marker}, so it holds no {what} saved with "
                f"save_pretrained. Point it at such a directory, give a Hugging Face id, or use the built-in model "
                f"{TINY_LLAMA!r}.")
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(repo_id=name, filename="config.json"), str):
            return
    except Exception:  # an odd id or an old huggingface_hub: decide by reachability below
        pass
    if _offline_env():
        raise _load_error(name, what, None, "offline")
    if not _hub_reachable():
        raise _load_error(name, what, None, "unreachable")


def saved_dtype_name(name: str, model_kwargs: object = None) -> str | None:
    """The dtype a model's config.json says it was saved in ("float32", "float16", "bfloat16"), read from a local
    directory or the local Hugging Face cache (no network), or None when it cannot be told. transformers 5 writes
    `dtype`, older versions `torch_dtype`. The built-in model is float32."""
    import json

    if is_builtin(name):
        return "float32"
    kwargs = model_kwargs if isinstance(model_kwargs, dict) else {}
    if _is_local_path_name(name):
        path = os.path.join(os.path.expanduser(name), "config.json")
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            revision, cache_dir = kwargs.get("revision"), kwargs.get("cache_dir")
            path = try_to_load_from_cache(repo_id=name, filename="config.json",
                                          revision=revision if isinstance(revision, str) else None,
                                          cache_dir=cache_dir if isinstance(cache_dir, (str, os.PathLike)) else None)
        except Exception:  # an odd id or an old huggingface_hub: nothing to tell
            return None
        if not isinstance(path, str):
            return None
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None  # unreadable: loading it says why, this check does not block
    if not isinstance(config, dict):
        return None
    value = config.get("dtype", config.get("torch_dtype"))
    return _DTYPE_NAMES.get(value.lower().removeprefix("torch.")) if isinstance(value, str) else None


def saved_half_precision_problems(runs) -> list:
    """fp16 runs that train float16 weights on a model whose model_kwargs give no dtype (or "auto"): transformers
    then loads the checkpoint in its saved dtype, so a checkpoint saved in float16 fails at the first optimizer
    step on a GPU, as the explicit `dtype: float16` that config validation refuses. One Problem per model."""
    from rftui.config.problems import Problem
    from rftui.config.validate import half_precision_problem

    problems, seen = [], set()
    for run in runs:
        kwargs = dict(run.model_kwargs or {})
        given = kwargs.get("dtype", kwargs.get("torch_dtype"))
        if run.training.get("fp16") is not True or not (given is None or given == "auto") or run.model_name in seen:
            continue
        # the explicit case's rule, asked about the dtype the checkpoint would load in
        found = half_precision_problem(
            "training.fp16", True, run.lora, {"dtype": "float16"},
            "model: {kwargs: {dtype: float32}} in a config file, model_kwargs={'dtype': 'float32'} from Python",
            "a `lora:` section, or peft_config=RFLoraConfig(...)")
        if found is None:
            continue  # nothing float16 is trained
        seen.add(run.model_name)
        if saved_dtype_name(run.model_name, kwargs) == "float16":
            problems.append(Problem(found.path, f"model {run.model_name!r} is saved in float16 (its config.json) and "
                                    f"is loaded in that dtype when model_kwargs give no dtype; {found.message}",
                                    found.hint))
    return problems


def check_models_available(runs) -> None:
    """check_model_available for every distinct model and tokenizer the runs name (without a create_model hook,
    which loads models its own way), then saved_half_precision_problems as a ConfigError."""
    for model_name in dict.fromkeys(run.model_name for run in runs):
        check_model_available(model_name)
    for tokenizer in dict.fromkeys(run.tokenizer for run in runs if run.tokenizer):
        check_model_available(tokenizer, "tokenizer")
    problems = saved_half_precision_problems(runs)
    if problems:
        from rftui.config.problems import ConfigError

        raise ConfigError(problems)
