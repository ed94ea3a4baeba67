"""Leaving a RingLoader early, every way a training script does (issue 32): the script ends
with its own exit code, nothing aborts (a prefetching thread killed inside torch at interpreter
exit raised SIGABRT, exit code 134), and the ring is free for the next reader."""
import signal
import subprocess
import sys
import textwrap

import pytest

import barlow

ABORT = ("terminate called", "Aborted", "core dumped")

# Every script: `ring` is its first argument; `reattach()` proves that the RingLoader let go of
# the ring (this process's own pid, still alive, would otherwise hold it: ConsumerInUse).
PRELUDE = """
import sys, time
import barlow
ring = sys.argv[1]
def reattach():
    with barlow.Ring(ring, wait=0) as r:
        print("reattached at step", r.next().step, flush=True)
"""

SCRIPTS = {
    # The script: a break, then the interpreter's normal exit. `reattach` runs at exit,
    # after barlow.torch's own exit hook (registered later, so run first).
    "exit": """
        import atexit
        atexit.register(reattach)
        from barlow.torch import RingLoader
        loader = RingLoader(ring, device="cpu")
        for i, (x_a, x_b, labels) in enumerate(loader):
            if i == 1:
                break
        print("left at step", loader.step)
    """,
    "exception": """
        from barlow.torch import RingLoader
        for i, (x_a, x_b, labels) in enumerate(RingLoader(ring, device="cpu")):
            if i == 1:
                raise RuntimeError("the loss is nan")
    """,
    "del": """
        from barlow.torch import RingLoader
        loader = RingLoader(ring, device="cpu")
        for i, (x_a, x_b, labels) in enumerate(loader):
            if i == 1:
                break
        del loader
        reattach()
    """,
    "with": """
        from barlow.torch import RingLoader
        with RingLoader(ring, device="cpu") as loader:
            for i, (x_a, x_b, labels) in enumerate(loader):
                if i == 1:
                    break
        reattach()
    """,
    "ctrl-c": """
        from barlow.torch import RingLoader
        for x_a, x_b, labels in RingLoader(ring, device="cpu"):
            print("step", flush=True)
            time.sleep(0.1)
    """,
}


def run(script, ring, interrupt=False):
    """Runs `script` on `ring`; with `interrupt`, sends it SIGINT once it has trained a step."""
    code = PRELUDE + textwrap.dedent(SCRIPTS[script])
    p = subprocess.Popen([sys.executable, "-c", code, ring], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if interrupt:
        assert p.stdout.readline() == "step\n"
        p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=120)  # a hang guard, not a speed check
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"{script}: the script did not end:\n{p.communicate()[1]}")
    return p.returncode, out, err


@pytest.mark.parametrize("script,code,says", [
    ("exit", 0, None),
    ("exception", 1, "RuntimeError: the loss is nan"),
    ("del", 0, None),
    ("with", 0, None),
    ("ctrl-c", -signal.SIGINT, "KeyboardInterrupt"),
])
def test_leaving_early_ends_with_the_scripts_exit_code_and_frees_the_ring(loaders, script, code, says):
    ring = loaders.ring()
    loaders.start(ring, steps=200)
    rc, out, err = run(script, ring, interrupt=script == "ctrl-c")
    assert rc == code, (rc, out, err)
    assert not [a for a in ABORT if a in err], err
    if says:
        assert says in err, err
    if "reattach" in SCRIPTS[script]:
        assert "reattached at step" in out, (out, err)
    # A second reader attaches and continues after what the first one took: two steps, or for
    # ctrl-c at least the one it printed (SIGINT may come before the prefetcher takes the next).
    taken = 1 if script == "ctrl-c" else 2
    with barlow.Ring(ring, wait=5) as second:
        assert second.next().step >= taken
