"""barlow.torch.RingLoader on the CPU against the real loader: values, dtypes, resume."""
import numpy as np
import pytest
import torch

import barlow
from barlow.torch import RingLoader

MEAN = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)


def raw_batches(ring):
    """(step, view_a, view_b, labels) copies of every batch, read with barlow.Ring."""
    with barlow.Ring(ring) as r:
        return [(b.step, np.array(b.view_a), np.array(b.view_b), b.labels.copy()) for b in r]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2 ** -7), (torch.float16, 2 ** -10)])
def test_values_are_the_headers_normalisation_in_every_dtype(loaders, dtype, tol):
    ring_raw, ring_t = loaders.ring(), loaders.ring()
    loaders.start(ring_raw, steps=3, seed=4)
    raw = raw_batches(ring_raw)
    loaders.start(ring_t, steps=3, seed=4)
    loader = RingLoader(ring_t, device="cpu", dtype=dtype, channels_last=dtype == torch.bfloat16)
    assert len(loader) == 3
    got = list(loader)
    assert len(got) == 3
    for (step, a, b, labels), (x_a, x_b, y) in zip(raw, got):
        for u8, x in ((a, x_a), (b, x_b)):
            assert x.dtype == dtype and x.shape == (8, 3, 32, 32) and x.device.type == "cpu"
            expect = (u8 / 255.0 - MEAN) / STD  # float64, from the definition
            err = np.abs(x.float().numpy() - expect) / np.maximum(np.abs(expect), 1.0)
            assert err.max() <= tol, (dtype, err.max())
            if dtype == torch.bfloat16:
                assert x.is_contiguous(memory_format=torch.channels_last)
        assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    assert loader.step == 3
    loader.close()


def test_the_stream_resumed_from_state_dict_equals_the_uninterrupted_one(loaders):
    whole, first, rest = loaders.ring(), loaders.ring(), loaders.ring()
    loaders.start(whole, steps=8, seed=9)
    with RingLoader(whole, device="cpu") as loader:
        uninterrupted = [(x_a.clone(), x_b.clone(), y.clone()) for x_a, x_b, y in loader]
    assert len(uninterrupted) == 8

    proc = loaders.start(first, steps=8, seed=9)
    loader = RingLoader(first, device="cpu", prefetch=2)
    seen = [next(loader) for _ in range(3)]
    state = loader.state_dict()
    loader.close()
    proc.kill()
    assert state["step"] == 3 and state["seed"] == 9 and state["batch_size"] == 8
    assert "--start-step 3" in state["loader_command"] and "--seed 9" in state["loader_command"]

    loaders.start(rest, "--start-step", str(state["step"]), steps=8, seed=9)
    loader = RingLoader(rest, device="cpu")
    loader.load_state_dict(state)
    resumed = seen + list(loader)
    assert len(resumed) == 8
    for (a0, b0, y0), (a1, b1, y1) in zip(uninterrupted, resumed):
        assert torch.equal(a0, a1) and torch.equal(b0, b1) and torch.equal(y0, y1)
    loader.close()


def test_a_ring_at_another_step_is_refused_with_the_command_to_run(loaders):
    ring = loaders.ring()
    loaders.start(ring, steps=4, seed=9)
    with RingLoader(ring, device="cpu") as loader:
        with pytest.raises(barlow.RingError, match=f"loader --shm {ring} --seed 9 .*--start-step 2"):
            loader.load_state_dict({"step": 2})
        with pytest.raises(barlow.RingError, match="seed is 9"):
            loader.load_state_dict({"step": 0, "seed": 8})
        loader.load_state_dict({"step": 0, "seed": 9})


def test_a_killed_loader_reaches_the_training_loop(loaders):
    ring = loaders.ring()
    proc = loaders.start(ring, "--throttle-ms", "200", steps=1000)
    loader = RingLoader(ring, device="cpu")
    next(loader)
    proc.kill()
    with pytest.raises(barlow.LoaderDied):
        for _ in loader:
            pass
    loader.close()
