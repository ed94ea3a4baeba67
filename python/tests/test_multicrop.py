"""Multi-crop rings (loader --recipe dino) from Python: barlow.Ring's views and groups, and
barlow.torch.RingLoader's list of crops (order, shapes, normalisation in every dtype, end of data,
a killed loader, resume), against the real loader."""
import numpy as np
import pytest
import torch

import barlow
from barlow.torch import RingLoader

MEAN = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
# 2 global 32x32 views and 3 local 16x16 ones per image.
DINO = ("--recipe", "dino", "--local-size", "16", "--local-crops", "3")


def raw_batches(ring):
    """(step, [every view], labels) copies of every batch, read with barlow.Ring."""
    with barlow.Ring(ring) as r:
        out = []
        for b in r:
            groups = b.groups
            assert [g.shape for g in groups] == [(2, 8, 3, 32, 32), (3, 8, 3, 16, 16)]
            views = [np.array(v) for v in b.views]
            # The groups are the same memory as the views, in order.
            assert all(np.array_equal(groups[0][k], views[k]) for k in range(2))
            assert all(np.array_equal(groups[1][k], views[2 + k]) for k in range(3))
            assert np.array_equal(b.view_a, views[0]) and np.array_equal(b.view_b, views[1])
            out.append((b.step, views, b.labels.copy()))
        return out


def test_the_header_describes_the_recipes_view_groups(loaders):
    ring = loaders.ring()
    loaders.start(ring, *DINO, steps=2)
    with barlow.Ring(ring) as r:
        i = r.info
        assert i["recipe"] == "dino" and i["views"] == 5
        assert i["groups"] == [{"views": 2, "height": 32, "width": 32}, {"views": 3, "height": 16, "width": 16}]
        assert (i["height"], i["width"]) == (32, 32)
        batch = r.next()
        views = batch.views
        assert [v.shape for v in views] == [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 3
        assert len({v.tobytes() for v in views}) == 5, "every crop is its own"
        batch.release()
        with pytest.raises(barlow.RingError, match="released"):
            batch.views


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2 ** -7), (torch.float16, 2 ** -10)])
def test_crops_come_globals_first_normalised_in_every_dtype(loaders, dtype, tol):
    ring_raw, ring_t = loaders.ring(), loaders.ring()
    loaders.start(ring_raw, *DINO, steps=3, seed=4)
    raw = raw_batches(ring_raw)
    loaders.start(ring_t, *DINO, steps=3, seed=4)
    loader = RingLoader(ring_t, device="cpu", dtype=dtype, channels_last=dtype == torch.bfloat16)
    assert loader.crops and len(loader) == 3
    got = list(loader)
    assert len(got) == 3
    for (step, views, labels), (crops, y) in zip(raw, got):
        assert len(crops) == 5
        assert [tuple(c.shape) for c in crops] == [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 3
        for u8, x in zip(views, crops):
            assert x.dtype == dtype and x.device.type == "cpu"
            expect = (u8 / 255.0 - MEAN) / STD  # float64, from the definition
            err = np.abs(x.float().numpy() - expect) / np.maximum(np.abs(expect), 1.0)
            assert err.max() <= tol, (dtype, err.max())
            if dtype == torch.bfloat16:
                assert x.is_contiguous(memory_format=torch.channels_last)
        assert y.tolist() == labels.tolist()
    loader.close()


def test_a_swav_ring_declares_and_gets_swavs_own_std(loaders):
    """SwAV normalises with std (0.228, 0.224, 0.225): the header says so and RingLoader applies it."""
    swav = ("--recipe", "swav", "--local-size", "16", "--local-crops", "2")
    ring_raw, ring_t = loaders.ring(), loaders.ring()
    loaders.start(ring_raw, *swav, steps=2, seed=3)
    with barlow.Ring(ring_raw) as r:
        i = r.info
        assert i["recipe"] == "swav" and i["views"] == 4
        assert np.allclose(i["std"], [0.228, 0.224, 0.225]) and np.allclose(i["mean"], MEAN.ravel())
        raw = [[np.array(v) for v in b.views] for b in r]
    loaders.start(ring_t, *swav, steps=2, seed=3)
    with RingLoader(ring_t, device="cpu") as loader:
        got = [crops for crops, _ in loader]
    swav_std = np.array([0.228, 0.224, 0.225]).reshape(1, 3, 1, 1)
    assert len(got) == len(raw) == 2
    for views, crops in zip(raw, got):
        assert [tuple(c.shape) for c in crops] == [(8, 3, 32, 32)] * 2 + [(8, 3, 16, 16)] * 2
        for u8, x in zip(views, crops):
            expect = (u8 / 255.0 - MEAN) / swav_std
            assert np.abs(x.numpy() - expect).max() <= 1e-5


def test_pairs_are_refused_for_a_multi_crop_ring_and_crops_offered_for_a_two_view_one(loaders):
    dino, bt = loaders.ring(), loaders.ring()
    loaders.start(dino, *DINO, steps=2)
    with pytest.raises(ValueError, match=r"dino recipe's views \(2x32x32 \+ 3x16x16\).*crops=True"):
        RingLoader(dino, device="cpu", crops=False)
    loaders.start(bt, steps=2)
    with RingLoader(bt, device="cpu", crops=True) as loader:
        crops, labels = next(loader)
        assert [tuple(c.shape) for c in crops] == [(8, 3, 32, 32)] * 2


def test_end_of_data_resume_and_a_killed_loader(loaders):
    whole, first, rest, dying = (loaders.ring() for _ in range(4))
    loaders.start(whole, *DINO, steps=5, seed=3)
    with RingLoader(whole, device="cpu") as loader:
        uninterrupted = [([c.clone() for c in crops], y) for crops, y in loader]
    assert len(uninterrupted) == 5, "the stream ends at the loader's last step"

    proc = loaders.start(first, *DINO, steps=5, seed=3)
    loader = RingLoader(first, device="cpu")
    seen = [next(loader) for _ in range(2)]
    state = loader.state_dict()
    loader.close()
    proc.kill()
    cmd = state["loader_command"]
    assert "--recipe dino" in cmd and "--local-size 16 --local-crops 3" in cmd and "--start-step 2" in cmd
    loaders.start(rest, *DINO, "--start-step", "2", steps=5, seed=3)
    loader = RingLoader(rest, device="cpu")
    loader.load_state_dict(state)
    resumed = seen + list(loader)
    loader.close()
    for (c0, y0), (c1, y1) in zip(uninterrupted, resumed):
        assert all(torch.equal(a, b) for a, b in zip(c0, c1)) and torch.equal(y0, y1)

    proc = loaders.start(dying, *DINO, "--throttle-ms", "200", steps=1000)
    loader = RingLoader(dying, device="cpu")
    next(loader)
    proc.kill()
    with pytest.raises(barlow.LoaderDied):
        for _ in loader:
            pass
    loader.close()


def test_the_dino_example_trains_a_few_steps_on_the_ring(loaders, tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    import json
    ring = loaders.ring()
    loaders.start(ring, *DINO, steps=4, seed=2)
    report = tmp_path / "report.json"
    example = Path(__file__).resolve().parents[2] / "examples" / "torch_multicrop.py"
    out = subprocess.run([sys.executable, str(example), "--shm", ring, "--device", "cpu", "--out-dim", "256",
                          "--report", str(report)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [line["step"] for line in lines] == [0, 1, 2, 3]
    assert lines[0]["crops"] == [[8, 3, 32, 32]] * 2 + [[8, 3, 16, 16]] * 3
    assert all(np.isfinite(line["loss"]) and line["loss"] > 0 for line in lines)
    assert lines[-1]["teacher_moved"] > 0 and lines[-1]["center_norm"] > 0, "the EMA teacher and centre moved"
    assert json.loads(report.read_text())["student"] != json.loads(report.read_text())["teacher"]
