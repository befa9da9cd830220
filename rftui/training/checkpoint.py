"""Atomic, checksummed, pickle-free run checkpoints: safetensors for tensors, JSON for everything else.

Layout under ``<checkpoint_root>/<run_id>/``::

    step-<N>/adapter.safetensors     trainable weights (LoRA adapter, adapter name stripped from keys)
    step-<N>/optimizer.safetensors   optimizer state tensors, keyed "<param name>::<state key>"
    step-<N>/optimizer.json          param_groups (params as names) and non-tensor per-param state
    step-<N>/scheduler.json          LR scheduler state_dict
    step-<N>/rng.safetensors         torch CPU / CUDA RNG states (uint8)
    step-<N>/rng.json                python `random` and numpy RNG states
    step-<N>/state.json              step, data position, logging accumulators, run identity
    step-<N>/manifest.json           sha256 of every file above
    latest                           JSON pointer {"step": N, "dir": "step-<N>"}, replaced atomically

A step directory is written under a temporary name, fsynced and renamed into place; `latest` is
written to a temporary file and `os.replace`d. The last `KEEP` step directories are kept. Loading
verifies every checksum first, so a damaged checkpoint is never half-loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from rftui.errors import ExperimentError

FORMAT_VERSION = 1
KEEP = 2
LATEST = "latest"
MANIFEST = "manifest.json"
_TENSOR_FILES = ("adapter", "optimizer", "rng")
_JSON_FILES = ("optimizer", "scheduler", "rng", "state")


class CheckpointError(ExperimentError):
    """A checkpoint is missing, damaged (checksum mismatch) or does not fit the run it is loaded into."""


@dataclass
class CheckpointData:
    """Everything a run needs to continue bitwise: tensors by file, JSON documents by file."""

    step: int
    adapter: dict[str, torch.Tensor]
    optimizer_tensors: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng_tensors: dict[str, torch.Tensor]
    rng: dict[str, Any]
    state: dict[str, Any]
    path: str | None = field(default=None, compare=False)


def step_dir_name(step: int) -> str:
    return f"step-{step}"


def run_dir(checkpoint_root: str | os.PathLike, run_id: str) -> Path:
    return Path(checkpoint_root) / run_id


def save_checkpoint(checkpoint_root: str | os.PathLike, run_id: str, data: CheckpointData,
                    protect: str | os.PathLike | None = None) -> str:
    """Write `data` atomically as `<root>/<run_id>/step-<N>`, point `latest` at it, prune old steps.

    `protect` names a step directory pruning must keep: the one the controller's state.db still points at
    (the quantum's starting checkpoint), so a controller killed before it records this save can resume.
    Returns the step directory's path.
    """
    base = run_dir(checkpoint_root, run_id)
    base.mkdir(parents=True, exist_ok=True)
    final = base / step_dir_name(data.step)
    tmp = base / f".tmp-{step_dir_name(data.step)}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        tensors = {"adapter": data.adapter, "optimizer": data.optimizer_tensors, "rng": data.rng_tensors}
        for name in _TENSOR_FILES:
            _write_tensors(tmp / f"{name}.safetensors", tensors[name])
        docs = {"optimizer": data.optimizer, "scheduler": data.scheduler, "rng": data.rng,
                "state": {**data.state, "format": FORMAT_VERSION, "step": data.step}}
        for name in _JSON_FILES:
            _write_json(tmp / f"{name}.json", docs[name])
        manifest = {"format": FORMAT_VERSION, "step": data.step,
                    "files": {p.name: _sha256(p) for p in sorted(tmp.iterdir())}}
        _write_json(tmp / MANIFEST, manifest)
        _fsync_dir(tmp)
        if final.exists():  # same step written again (e.g. preempted before any step): swap it out
            old = base / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_dir(base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_json(base / LATEST, {"step": data.step, "dir": final.name}, atomic=True)
    _fsync_dir(base)
    _prune(base, keep_step=data.step, protect=Path(protect).name if protect else None)
    return str(final)


def latest_step_dir(checkpoint_root: str | os.PathLike, run_id: str) -> Path | None:
    """The step directory `latest` points at, or None when the run has no checkpoint."""
    base = run_dir(checkpoint_root, run_id)
    pointer = base / LATEST
    if not pointer.exists():
        return None
    try:
        target = json.loads(pointer.read_text(encoding="utf-8"))["dir"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint pointer {pointer} is damaged ({exc}); delete it to start the run over") from exc
    path = base / target
    if not path.is_dir():
        raise CheckpointError(f"checkpoint pointer {pointer} names {target}, which does not exist")
    return path


def load_latest(checkpoint_root: str | os.PathLike, run_id: str) -> CheckpointData | None:
    """Load and verify the run's latest checkpoint; None when it has none."""
    path = latest_step_dir(checkpoint_root, run_id)
    return None if path is None else load_checkpoint(path)


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """Accept a step directory or a run directory (then follow its `latest` pointer)."""
    path = Path(path)
    if (path / MANIFEST).exists():
        return path
    if (path / LATEST).exists():
        found = latest_step_dir(path.parent, path.name)
        if found is not None:
            return found
    raise CheckpointError(f"{path} is not a checkpoint (no {MANIFEST} or {LATEST} pointer in it)")


def verify_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Check every file against the manifest; returns the manifest. Raises CheckpointError naming the bad file."""
    path = Path(path)
    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        files = manifest["files"]
    except FileNotFoundError as exc:
        raise CheckpointError(f"checkpoint {path} has no {MANIFEST}: it is incomplete; use an earlier step") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: {MANIFEST} is damaged ({exc})") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format {manifest.get('format')!r}, expected {FORMAT_VERSION}")
    expected = {f"{n}.safetensors" for n in _TENSOR_FILES} | {f"{n}.json" for n in _JSON_FILES}
    missing = sorted(expected - set(files))
    if missing:
        raise CheckpointError(f"checkpoint {path}: manifest does not list {', '.join(missing)}")
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"checkpoint file {file} is missing")
        actual = _sha256(file)
        if actual != digest:
            raise CheckpointError(
                f"checkpoint file {file} is corrupted: sha256 {actual[:12]}… does not match the manifest's "
                f"{digest[:12]}…; it was not loaded. Delete {path} to fall back to the previous checkpoint."
            )
    return manifest


def load_checkpoint(path: str | os.PathLike) -> CheckpointData:
    """Verify then load one step directory (or a run directory's latest step)."""
    path = resolve_checkpoint_dir(path)
    manifest = verify_checkpoint(path)
    try:
        tensors = {name: load_file(str(path / f"{name}.safetensors")) for name in _TENSOR_FILES}
        docs = {name: json.loads((path / f"{name}.json").read_text(encoding="utf-8")) for name in _JSON_FILES}
    except Exception as exc:  # noqa: BLE001 - verified files that still fail to parse are damaged
        raise CheckpointError(f"checkpoint {path} cannot be read: {type(exc).__name__}: {exc}") from exc
    return CheckpointData(
        step=int(manifest["step"]),
        adapter=tensors["adapter"],
        optimizer_tensors=tensors["optimizer"],
        optimizer=docs["optimizer"],
        scheduler=docs["scheduler"],
        rng_tensors=tensors["rng"],
        rng=docs["rng"],
        state=docs["state"],
        path=str(path),
    )


# ----------------------------------------------------------------------------- file helpers


def _write_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    save_file(cpu, str(path), metadata={"format": str(FORMAT_VERSION)})
    _fsync_file(path)


def _write_json(path: Path, doc: Any, *, atomic: bool = False) -> None:
    text = json.dumps(doc, indent=1, sort_keys=True, allow_nan=True)
    target = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp") if atomic else path
    with open(target, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    if atomic:
        os.replace(target, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _prune(base: Path, keep_step: int, protect: str | None = None) -> None:
    steps = []
    for entry in base.iterdir():
        if entry.is_dir() and entry.name.startswith("step-"):
            try:
                steps.append((int(entry.name[5:]), entry))
            except ValueError:
                continue
        elif entry.name.startswith((".tmp-", ".old-")) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)  # leftovers of a crash mid-write
        elif entry.name.startswith(f".{LATEST}.") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)  # a pointer write cut short
    # Keep the step `latest` points at and the KEEP-1 before it; steps after it belong to an abandoned attempt.
    older = sorted(s for s, _ in steps if s < keep_step)
    keep = {keep_step, *older[len(older) - (KEEP - 1):]} if KEEP > 1 else {keep_step}
    for step, entry in steps:
        if step not in keep and entry.name != protect:
            # Rename first: a kill during the removal leaves an `.old-` leftover, never a half step directory.
            doomed = base / f".old-{entry.name}-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(entry, doomed)
            except OSError:
                continue
            shutil.rmtree(doomed, ignore_errors=True)
