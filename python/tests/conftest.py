"""Fixtures for the barlow package's tests: the real `loader`/`trainer`/`datasets` binaries
(BARLOW_BIN, default target/debug of the repository; scripts/test.sh builds them), a small demo
dataset made once per session, and loaders started on rings in a temporary folder (absolute
paths, so nothing lands in /dev/shm)."""
import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("BARLOW_BIN", REPO / "target" / "debug"))


def binary(name):
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} not found: build it first (cargo build -p loader -p trainer -p datasets) "
                    "or point BARLOW_BIN at the folder holding it")
    return str(path)


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    """3 classes x 16 demo JPEGs (48 images: 6 batches of 8 per epoch)."""
    out = tmp_path_factory.mktemp("data") / "demo"
    subprocess.run([binary("datasets"), "demo", "--out", str(out), "--classes", "3", "--per-class", "16"],
                   check=True, stdout=subprocess.DEVNULL)
    return out


class Loaders:
    """Starts `loader` processes on rings under a temporary folder; kills what is left at the end."""

    def __init__(self, tmp, demo):
        self.tmp, self.demo, self.procs, self.n = tmp, demo, [], 0

    def ring(self, tag="r"):
        self.n += 1
        return str(self.tmp / f"{tag}{self.n}")

    def start(self, ring, *args, steps=6, batch=8, size=32, seed=1, wait_for_ring=True):
        cmd = [binary("loader"), "--dir", str(self.demo), "--shm", ring, "--steps", str(steps),
               "--batch-size", str(batch), "--image-size", str(size), "--seed", str(seed),
               "--workers", "2", *args]
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        if wait_for_ring:
            first = ring.split(",")[0]
            deadline = time.monotonic() + 60  # a hang guard, not a speed check
            while not os.path.exists(first):
                if p.poll() is not None or time.monotonic() > deadline:
                    p.kill()
                    pytest.fail(f"the ring {first} never appeared; loader said:\n{p.stderr.read()}")
                time.sleep(0.02)
        return p

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def loaders(tmp_path, demo):
    ls = Loaders(tmp_path, demo)
    yield ls
    ls.close()
