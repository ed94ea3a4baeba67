"""barlow.Ring against the real loader on demo data: what arrives, in what order, and what
happens when something goes wrong."""
import os
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

import barlow
from conftest import binary

FNV_OFFSET, FNV_PRIME, MASK = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def fnv1a64(h, data):
    """FNV-1a, 64-bit: the hash `trainer --dry-run --digest` prints (written here from its
    definition, not taken from barlow's code)."""
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & MASK
    return h


def digest(batch):
    h = fnv1a64(FNV_OFFSET, batch.view_a.tobytes())
    h = fnv1a64(h, batch.view_b.tobytes())
    for label, index in zip(batch.labels, batch.indices):
        h = fnv1a64(h, int(label).to_bytes(4, "little"))
        h = fnv1a64(h, int(index).to_bytes(8, "little"))
    return h


def image_folder_targets(root):
    """Labels by dataset index as torchvision's ImageFolder gives them (classes sorted)."""
    from torchvision.datasets import ImageFolder
    return [label for _, label in ImageFolder(str(root)).samples]


def test_batches_have_the_header_geometry_and_the_folders_labels(loaders, demo):
    ring = loaders.ring()
    loaders.start(ring, steps=6, batch=8, size=32)
    targets = image_folder_targets(demo)
    with barlow.Ring(ring, wait=30) as r:
        info = r.info
        assert (info["batch_size"], info["channels"], info["height"], info["width"]) == (8, 3, 32, 32)
        assert info["dataset_len"] == 48 and info["steps_per_epoch"] == 6 and info["planned_steps"] == 6
        assert info["seed"] == 1 and info["first_step"] == 0 and info["world_size"] == 1
        assert np.allclose(info["mean"], [0.485, 0.456, 0.406]) and np.allclose(info["std"], [0.229, 0.224, 0.225])
        seen, steps = [], []
        for batch in r:
            for v in (batch.view_a, batch.view_b):
                assert v.shape == (8, 3, 32, 32) and v.dtype == np.uint8
                assert not v.flags.writeable and not v.flags.owndata  # a view of the slot
                assert v.std() > 0  # real pixels, not an empty slot
            assert not np.array_equal(batch.view_a, batch.view_b)  # two different augmentations
            assert batch.labels.dtype == np.int64 and batch.indices.dtype == np.int64
            assert batch.labels.tolist() == [targets[i] for i in batch.indices]
            assert batch.epoch == 0
            steps.append(batch.step)
            seen += batch.indices.tolist()
        # End of data ends iteration, and stays ended.
        assert r.next() is None
    assert steps == list(range(6))
    assert sorted(seen) == list(range(48)), "one epoch is a permutation of the dataset"


def test_bytes_equal_what_the_trainer_reads_for_the_same_seed(loaders):
    ring_t, ring_p = loaders.ring(), loaders.ring()
    loaders.start(ring_t, steps=3, seed=7)
    out = subprocess.run([binary("trainer"), "--shm", ring_t, "--wait", "30", "--dry-run", "--digest"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    trainer_lines = [l for l in out.stdout.splitlines() if l.startswith("step ")]
    assert len(trainer_lines) == 3
    loaders.start(ring_p, steps=3, seed=7)
    with barlow.Ring(ring_p) as r:
        python_lines = [f"step {b.step} {digest(b):016x}" for b in r]
    assert python_lines == trainer_lines


def test_a_released_batch_cannot_be_read(loaders):
    ring = loaders.ring()
    loaders.start(ring, steps=3)
    with barlow.Ring(ring) as r:
        first = r.next()
        kept = np.array(first.view_a)
        first.release()
        assert first.released
        with pytest.raises(barlow.RingError, match="was released"):
            first.view_a
        second = r.next()
        assert second.step == 1 and not second.released
        second_a = second.view_a
        third = r.next()  # taking the next batch releases the one before
        with pytest.raises(barlow.RingError, match="copy the arrays"):
            second.view_b
        assert third.view_a.shape == second_a.shape
        assert kept.flags.owndata and kept.std() > 0  # a copy outlives its batch


def test_a_second_reader_is_refused(loaders):
    ring = loaders.ring()
    loaders.start(ring, steps=2)
    with barlow.Ring(ring):
        with pytest.raises(barlow.ConsumerInUse, match="only one reader") as e:
            barlow.Ring(ring, wait=5)
        assert isinstance(e.value, barlow.RingError)
        assert str(os.getpid()) in str(e.value)


def test_a_killed_loader_raises_loader_died_promptly(loaders):
    ring = loaders.ring()
    proc = loaders.start(ring, "--throttle-ms", "200", steps=1000)
    with barlow.Ring(ring) as r:
        assert r.next() is not None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        started = time.monotonic()
        with pytest.raises(barlow.LoaderDied, match="died"):
            for _ in r:
                pass
        # A hang guard with room to spare: liveness is checked every 50 ms, a dead pid is seen
        # at once and a stale heartbeat after 3 s.
        assert time.monotonic() - started < 15


def test_close_wakes_a_next_waiting_in_another_thread(loaders):
    ring = loaders.ring()
    loaders.start(ring, "--throttle-ms", "60000", steps=2)  # the first batch comes in a minute
    r = barlow.Ring(ring)
    raised = []

    def wait_for_a_batch():
        try:
            r.next()
        except barlow.RingError as e:
            raised.append(e)

    waiting = threading.Thread(target=wait_for_a_batch)
    waiting.start()
    time.sleep(0.3)
    r.close()
    waiting.join(timeout=10)  # a hang guard: the wait ends at once
    assert not waiting.is_alive()
    assert len(raised) == 1 and "closed" in str(raised[0])
    with barlow.Ring(ring, wait=0):  # detached: a new reader may attach
        pass


def test_bad_names_and_missing_rings_say_what_to_do(tmp_path):
    with pytest.raises(barlow.RingError, match="invalid ring name"):
        barlow.Ring("no/such/../ring", wait=0)
    started = time.monotonic()
    with pytest.raises(barlow.RingError, match="start the loader first"):
        barlow.Ring(str(tmp_path / "nothing"), wait=0.3)
    assert time.monotonic() - started < 10
    with pytest.raises(ValueError, match="wait must be"):
        barlow.Ring("x", wait=-1)


def test_stats_give_the_flow_and_the_shared_verdict(loaders):
    ring = loaders.ring()
    loaders.start(ring, steps=4)
    with barlow.Ring(ring) as r:
        r.stats()
        for b in r:
            time.sleep(0.05)  # the reader's own work, counted as train_ns
        s = r.stats()
    assert s["consumed"] == 4 and s["written"] == 4
    assert s["verdict"] in ("input-bound", "compute-bound", "balanced", "idle")
    assert s["advice"] and 0 <= s["reader_wait"] <= 1 and 0 <= s["loader_wait"] <= 1
    assert s["counters"]["pairs_written"] == 32
    assert s["counters"]["train_ns"] >= 3 * 50_000_000
    assert s["state"] == "end-of-data"
