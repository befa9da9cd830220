"""Offloading a run's trainable state: copies into reused host buffers, all-or-nothing in both directions.
(On a CPU machine the copies are plain; the CUDA test in test_training_correctness covers the real devices.)"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from rftui.training import offload
from rftui.training.offload import bring_to_device, offload_to_host


def make_run():
    torch.manual_seed(0)
    params = {"a.lora_A": torch.nn.Parameter(torch.randn(4, 8)), "a.lora_B": torch.nn.Parameter(torch.randn(8, 4))}
    optimizer = torch.optim.AdamW(params.values(), lr=1e-2)
    sum(p.square().sum() for p in params.values()).backward()
    optimizer.step()
    return SimpleNamespace(params=params, optimizer=optimizer, host_buffers={}, offloaded=False)


def snapshot(run):
    values = {name: p.detach().clone() for name, p in run.params.items()}
    for i, state in enumerate(run.optimizer.state.values()):
        values.update({(i, k): v.clone() for k, v in state.items()})
    return values


def storages(run):
    ptrs = [p.data.data_ptr() for p in run.params.values()]
    ptrs += [v.data_ptr() for s in run.optimizer.state.values() for k, v in s.items() if k != "step"]
    return ptrs


def assert_same(run, before):
    after = snapshot(run)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_offload_copies_into_buffers_that_are_reused_and_back_again():
    run = make_run()
    before, original = snapshot(run), storages(run)
    offload_to_host(run)
    assert run.offloaded
    buffers = storages(run)
    assert set(buffers).isdisjoint(original)  # copies, not the same tensors
    assert len(run.host_buffers) == 2 + 2 * 2  # two params, exp_avg + exp_avg_sq each; the step counter stays
    assert_same(run, before)
    bring_to_device(run, "cpu")
    assert not run.offloaded
    assert_same(run, before)
    # The optimizer still drives the very same parameters after the round trip.
    steps = [s["step"].item() for s in run.optimizer.state.values()]
    run.optimizer.zero_grad()
    sum(p.square().sum() for p in run.params.values()).backward()
    run.optimizer.step()
    assert [s["step"].item() for s in run.optimizer.state.values()] == [n + 1 for n in steps]
    for name, p in run.params.items():
        run.params[name].data = p.data.clone()  # as the device copies are, fresh tensors
    offload_to_host(run)
    assert storages(run) == buffers  # the second offload reuses the first one's buffers


def test_a_failure_half_way_leaves_the_run_where_it_was(monkeypatch):
    run = make_run()
    before, original = snapshot(run), storages(run)
    calls = {"n": 0}
    real_empty = torch.empty

    def failing_empty(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("cannot allocate pinned memory")
        return real_empty(*args, **kwargs)

    monkeypatch.setattr(offload.torch, "empty", failing_empty)
    with pytest.raises(RuntimeError, match="pinned"):
        offload_to_host(run)
    assert not run.offloaded and storages(run) == original
    assert_same(run, before)
