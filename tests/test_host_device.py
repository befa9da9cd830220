"""The training host's device on a CUDA worker, checked on a CPU box with torch.cuda answers patched in."""
from __future__ import annotations

import pytest
import torch

from rftui.config.runspec import RunSpec
from rftui.training.host import TrainingHost


class _Model:
    def __init__(self):
        self.moved_to = None

    def to(self, device):
        self.moved_to = device
        return self


@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_bases_go_to_the_one_gpu_the_worker_sees(monkeypatch, device):
    """A worker sees one GPU, cuda:0, whatever index it was given: shared bases go where full fine-tuning copies
    and TRL's batches go (a base sent to cuda:1 fails with 'invalid device ordinal')."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    model = _Model()
    host = TrainingHost(0, device=device, model_loader=lambda name, **kw: (model, object()))
    try:
        host._bases.get(RunSpec(run_id="r1", label="r1", model_name="m", training={}, lora=None))
    finally:
        host._bases.clear()
        host.close()
    assert (host.device, model.moved_to) == ("cuda:0", "cuda:0")
