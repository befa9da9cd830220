"""Moving a run's trainable state (its parameters and optimizer state) between the accelerator and host memory.

Offloading copies into pinned host buffers that the run keeps and reuses, asynchronously, with one
synchronization at the end: one copy per tensor at the rate the link allows, instead of a blocking copy to
pageable memory plus a second copy into fresh pinned memory. Both directions first copy everything, then swap
the tensors in, so a failure half-way (out of memory, a failed pinned allocation) leaves the run where it was.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch

Put = Callable[[torch.Tensor], None]


def _slots(run: Any) -> Iterator[tuple[Any, torch.Tensor, Put]]:
    """(key, tensor, put) for every tensor that moves. Optimizer state is keyed by its parameter object, which
    stays the same while its `.data` moves; the step counter stays where the optimizer keeps it."""
    for name, param in run.params.items():
        yield ("param", name), param.data, (lambda t, p=param: setattr(p, "data", t))
    for param, state in run.optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                yield ("state", id(param), key), value, (lambda t, s=state, k=key: s.__setitem__(k, t))


def offload_to_host(run: Any) -> None:
    """Move the run's tensors to (pinned, when CUDA is there) host buffers; returns once they are there."""
    pin = torch.cuda.is_available()
    staged: list[tuple[Put, torch.Tensor]] = []
    for key, tensor, put in _slots(run):
        buffer = run.host_buffers.get(key)
        if buffer is None or buffer.shape != tensor.shape or buffer.dtype != tensor.dtype:
            buffer = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=pin)
            run.host_buffers[key] = buffer
        buffer.copy_(tensor, non_blocking=pin and tensor.is_cuda)
        staged.append((put, buffer))
    if pin:
        torch.cuda.synchronize()  # before the host reads the buffers (a checkpoint) or the sources are freed
    for put, buffer in staged:
        put(buffer)
    run.offloaded = True


def bring_to_device(run: Any, device: str) -> None:
    """Move the run's tensors back onto `device`. The copies run in stream order before the next kernels, so
    there is nothing to wait for; the host buffers stay with the run for its next offload."""
    staged = [(put, tensor.to(device, non_blocking=True)) for _, tensor, put in _slots(run)]
    for put, tensor in staged:
        put(tensor)
    run.offloaded = False
