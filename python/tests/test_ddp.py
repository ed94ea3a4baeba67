"""examples/torch_bt.py under torchrun: two CPU ranks (gloo), one ring each from one loader."""
import json
import os
import subprocess
import sys

from conftest import REPO

EXAMPLE = str(REPO / "examples" / "torch_bt.py")


def torchrun(rings, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", EXAMPLE,
           "--shm", ",".join(rings), "--arch", "resnet18", "--projector", "32-32", "--device", "cpu",
           "--print-freq", "1", "--report", str(tmp_path / "report"),
           "--checkpoint-dir", str(tmp_path / "ckpt")]
    out = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                         timeout=600)  # a hang guard
    assert out.returncode == 0, out.stdout + out.stderr
    reports = [json.loads((tmp_path / f"report.rank{r}.json").read_text()) for r in (0, 1)]
    return out, reports


def test_two_ranks_train_on_disjoint_shards_and_end_with_the_same_parameters(loaders, tmp_path):
    rings = [loaders.ring("bt"), loaders.ring("bt")]
    loaders.start(",".join(rings), "--world-size", "2", steps=3, batch=4)
    out, (r0, r1) = torchrun(rings, tmp_path)
    for r in (r0, r1):
        assert r["world_size"] == 2 and r["step"] == 3
        assert [s["step"] for s in r["steps"]] == [0, 1, 2]
        assert r["params"] != r["params_at_start"], "the ranks trained"
    assert r0["params_at_start"] == r1["params_at_start"]
    assert r0["params"] == r1["params"], "DDP keeps the replicas identical"
    seen0 = [i for s in r0["steps"] for i in s["indices"]]
    seen1 = [i for s in r1["steps"] for i in s["indices"]]
    assert len(seen0) == len(seen1) == 12
    assert not set(seen0) & set(seen1), "the ranks' shards are disjoint"
    losses = [json.loads(l)["loss"] for l in out.stdout.splitlines() if l.startswith('{"rank": 0')]
    assert len(losses) == 3 and all(l == l and l > 0 for l in losses)

    # Resume rank 0 from the checkpoint, in one process: its loader restarted at the step saved.
    ring = loaders.ring("bt")
    loaders.start(ring, "--rank", "0", "--world-size", "2", "--start-step", "3", steps=5, batch=4)
    out = subprocess.run([sys.executable, EXAMPLE, "--shm", ring, "--arch", "resnet18", "--projector", "32-32",
                          "--device", "cpu", "--report", str(tmp_path / "resumed"),
                          "--checkpoint-dir", str(tmp_path / "ckpt"), "--resume"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "resumes at step 3" in out.stderr and "--start-step 3" in out.stderr
    q = json.loads((tmp_path / "resumed.rank0.json").read_text())
    assert q["params_at_start"] == r0["params"], "resumed from the checkpoint's weights"
    assert q["step"] == 5 and [s["step"] for s in q["steps"]] == [3, 4]
    assert q["params"] != r0["params"]
