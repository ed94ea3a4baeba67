#!/usr/bin/env python3
"""Does one training step of barlow do what one step of the official Barlow Twins code does?

For each case, runs barlow's real training steps (`trainer step-dump`: a seeded model, seeded u8
view batches, the training loop's own step) and loads its initial state and batches into the
official PyTorch code (facebookresearch/barlowtwins main.py, as `official_bt.py` holds it:
torchvision ResNet with zero_init_residual, the projector, BatchNorm1d(affine=False) and the loss,
LARS with its two parameter groups, adjust_learning_rate), runs the same steps there in FP32 on
the CPU (main.py's autocast/GradScaler left out) and compares, per tensor, the relative error
||barlow - torch|| / ||torch|| of:

  loss       every step's loss                                    bound 1e-5
  lr         both groups' learning rate at every step             bound 1e-12
  grad       every parameter's gradient (the last step's)         bound 1e-4
  param      every parameter after the last step                  bound 1e-4
  momentum   every LARS momentum buffer after the last step       bound 1e-4
  running    every BatchNorm running mean and variance             bound 1e-5
  init       barlow's initialisation against torchvision's: constants (BatchNorm weights,
             zero-init residual gammas, biases, running statistics) exactly equal; random
             tensors (kaiming-normal convolutions, uniform linear layers) with a standard
             deviation within 5% and a mean within 5 standard errors

The official LARS's `torch.norm` is computed in float64 (see `accurate_norms`): PyTorch's own
CPU float32 norm is up to 4e-3 off on the 8192-wide projector's weights.

A tensor whose reference is all zeros (e.g. the residual branches' gradients at the first step
after zero-init) must be all zeros in barlow too. The official `bn.running_*` buffers have no
barlow counterpart (barlow keeps no running statistics for the loss's BatchNorm: they never enter
training) and are not compared.

ReLU ties: an input within f32 rounding of 0 can fall on the other side of the kink in barlow
than in PyTorch (their values differ by ~1e-7 of the layer's scale), and one such element moves a
gradient through every layer below it: a difference of rounding, not of the computation.
`trainer step-dump` therefore records every ReLU's decisions (which inputs were above 0), and the
official model replays them in forward and backward, so that the bounds above compare the
computation itself. What makes that safe is checked too:

  ties       the ReLU calls match one to one (count and shapes), and wherever barlow's
             decision differs from PyTorch's own (x > 0) the input is a tie: |x| at most
             1e-4 of the layer's rms (the worst such ratio is printed; at most 1 in 1e4 elements)

Prints one line per case with the worst relative error per kind and its tensor; exits 1 if any
tensor of any case is outside its bound (each one named), 2 on a usage or setup error.

  cargo build --release -p trainer && python3 reference/step_check.py
  python3 reference/step_check.py --trainer target/debug/trainer --case r18-64-1-warmup
"""
import argparse
import contextlib
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from official_bt import BarlowTwins, learning_rate, official_lars, set_learning_rates  # noqa: E402

# warm-up: 10 epochs of 2 steps = steps 0..19; step 5 is inside it, step 25 after it
STEPS_PER_EPOCH, EPOCHS, WARMUP_EPOCHS = 2, 100, 10
LR_WEIGHTS, LR_BIASES, WEIGHT_DECAY, LAMBD = 0.2, 0.0048, 1.5e-6, 0.0051
BATCH, SIZE, SEED = 8, 64, 0
PHASES = {"warmup": 5, "after": 25}

# (name, arch, projector, steps, phase): each architecture with each projector, and each of
# (1 step, 3 steps) x (inside warm-up, after it) once
CASES = [
    ("r18-64-1-warmup", "resnet18", "64-64-64", 1, "warmup"),
    ("r18-8192-3-after", "resnet18", "8192-8192-8192", 3, "after"),
    ("r50-64-3-warmup", "resnet50", "64-64-64", 3, "warmup"),
    ("r50-8192-1-after", "resnet50", "8192-8192-8192", 1, "after"),
]

# a ReLU decision may differ from PyTorch's only where |x| <= TIE_REL * rms(x) of its call, and
# in at most TIE_FRACTION of all ReLU elements
TIE_REL, TIE_FRACTION = 1e-4, 1e-4

BOUNDS = {"loss": 1e-5, "lr": 1e-12, "grad": 1e-4, "param": 1e-4, "momentum": 1e-4, "running": 1e-5, "ties": TIE_REL}
KINDS = ["loss", "lr", "grad", "param", "momentum", "running", "init", "ties"]

DTYPES = {"F32": np.float32, "U8": np.uint8, "I64": np.int64}


def read_safetensors(path):
    """(tensors as numpy arrays (memory-mapped), metadata) of a safetensors file."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    n = int.from_bytes(bytes(raw[:8]), "little")
    header = json.loads(bytes(raw[8:8 + n]))
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, h in header.items():
        lo, hi = h["data_offsets"]
        out[name] = raw[base + lo:base + hi].view(DTYPES[h["dtype"]]).reshape(h["shape"])
    return out, meta


def rel_err(x, ref):
    """||x - ref|| / ||ref|| in f64; for an all-zero ref, 0 if x is all zeros too, else inf."""
    x = np.asarray(x, dtype=np.float64).ravel()
    ref = np.asarray(ref, dtype=np.float64).ravel()
    d = np.linalg.norm(x - ref)
    n = np.linalg.norm(ref)
    if n == 0:
        return 0.0 if d == 0 else math.inf
    return float(d / n)


class Report:
    """Worst error per kind and every tensor outside its bound."""

    def __init__(self):
        self.worst = {k: (0.0, "") for k in KINDS}
        self.failures = []
        self.count = {k: 0 for k in KINDS}
        self.all = []  # (kind, name, error) of every comparison

    def add(self, kind, name, err, ok=None):
        self.count[kind] += 1
        self.all.append((kind, name, err))
        if err > self.worst[kind][0] or not self.worst[kind][1]:
            self.worst[kind] = (err, name)
        if ok is None:
            ok = err <= BOUNDS[kind]
        if not ok:
            self.failures.append(f"{kind} {name}: {err:.3g}")

    def add_ties(self, ties):
        """The replayed ReLU decisions: every disagreement with PyTorch's is a tie."""
        self.ties = ties
        worst, name = ties.worst
        self.add("ties", name or "none differ", worst)
        if ties.differ > TIE_FRACTION * ties.elements:
            self.failures.append(f"ties: {ties.differ} of {ties.elements} ReLU decisions differ "
                                 f"(more than {TIE_FRACTION:.0e} of them)")

    def line(self):
        parts = []
        for k in KINDS:
            err, name = self.worst[k]
            if k == "ties":
                t = self.ties
                parts.append(f"ties {t.differ} of {t.elements} ReLU decisions differ in {t.calls} calls, "
                             f"worst |x|/rms {err:.1e} ({name})")
            elif k == "init":
                parts.append(f"init {self.count[k]} tensors {'ok' if not any(f.startswith('init') for f in self.failures) else 'MISMATCH'}")
            else:
                parts.append(f"{k} {err:.1e} ({name}, {self.count[k]})")
        return " | ".join(parts)


def check_init(report, state, model):
    """barlow's initial tensors against a fresh torchvision/official model's."""
    fresh = model.state_dict()
    for name, t in fresh.items():
        if name.startswith("bn.") or name.endswith("num_batches_tracked"):
            continue
        ref = t.detach().double().numpy()
        got = np.asarray(state[name], dtype=np.float64)
        if got.shape != ref.shape:
            report.add("init", name, math.inf, ok=False)
            continue
        if np.all(ref == ref.ravel()[0]):  # a constant: BN gamma/beta (zero-init residual), stats
            report.add("init", name, float(np.abs(got - ref).max()), ok=bool(np.array_equal(got, ref)))
        else:
            std_ratio = got.std() / ref.std()
            mean_ok = abs(got.mean()) <= 5 * ref.std() / math.sqrt(ref.size) + 1e-12
            report.add("init", name, abs(std_ratio - 1), ok=bool(abs(std_ratio - 1) <= 0.05 and mean_ok))


class _ReplayReLUFn(torch.autograd.Function):
    """ReLU that keeps the elements `keep` says (barlow's decisions) in forward and backward."""

    @staticmethod
    def forward(ctx, x, keep):
        ctx.save_for_backward(keep)
        return torch.where(keep, x, torch.zeros_like(x))

    @staticmethod
    def backward(ctx, gy):
        (keep,) = ctx.saved_tensors
        return torch.where(keep, gy, torch.zeros_like(gy)), None


class ReplayReLU(torch.nn.Module):
    """Stands in for an nn.ReLU: takes the next of barlow's recorded decisions from `ties.queue`
    and applies it, noting in `ties` where it differs from PyTorch's own (x > 0)."""

    def __init__(self, ties, name):
        super().__init__()
        self.ties = ties
        self.name = name

    def forward(self, x):
        return _ReplayReLUFn.apply(x, self.ties.take(self.name, x))


class Ties:
    """barlow's ReLU decisions for one forward pass and the disagreements with PyTorch's."""

    def __init__(self):
        self.queue = []
        self.calls = 0
        self.elements = 0
        self.differ = 0
        self.worst = (0.0, "")  # the largest |x| / rms(x) where the decisions differ

    def take(self, name, x):
        if not self.queue:
            raise SystemExit(f"step_check: {name}: barlow recorded fewer ReLU calls than the official model makes")
        m = self.queue.pop(0)
        if x.dim() == 4:  # barlow's (C, B*H*W) -> (B, C, H, W)
            b, c, h, w = x.shape
            want, to_torch = (c, b * h * w), lambda t: t.view(c, b, h, w).permute(1, 0, 2, 3)
        else:  # barlow's (F, B) -> (B, F)
            want, to_torch = (x.shape[1], x.shape[0]), lambda t: t.t()
        if tuple(m.shape) != want:
            raise SystemExit(f"step_check: {name}: barlow's ReLU call is {m.shape[0]}x{m.shape[1]}, "
                             f"PyTorch's {tuple(x.shape)}")
        keep = to_torch(torch.from_numpy(np.array(m)).bool())
        differ = keep != (x > 0)
        self.calls += 1
        self.elements += x.numel()
        n = int(differ.sum())
        if n:
            self.differ += n
            rms = float(x.detach().double().square().mean().sqrt())
            worst = float(x.detach()[differ].abs().max()) / rms
            if worst > self.worst[0]:
                self.worst = (worst, name)
        return keep.contiguous()


def replay_relus(model, ties):
    """Replaces every nn.ReLU of `model` by a ReplayReLU drawing from `ties`."""
    for pname, parent in list(model.named_modules()):
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(parent, name, ReplayReLU(ties, f"{pname}.{name}"))


_TORCH_NORM = torch.norm


def _f64_norm(t, *args, **kwargs):
    return _TORCH_NORM(t.double(), *args, **kwargs).to(t.dtype)


@contextlib.contextmanager
def accurate_norms():
    """`torch.norm` computed in float64 and rounded to float32 while the official LARS steps.
    PyTorch's CPU float32 norm accumulates in float32 lanes: 5.6e-4 off on a 2048x8192 weight and
    4.0e-3 on an 8192x8192 one (torch 2.14.1, against float64), which is all of the projector
    momentum's difference in the 8192 cases. The official recipe trains on GPUs, whose reduction
    is a different one; the check holds barlow to the norm itself. barlow's norms sum in two
    levels (3.6e-6 off on 8192x8192, `trainer/src/lars.rs`)."""
    torch.norm = _f64_norm
    try:
        yield
    finally:
        torch.norm = _TORCH_NORM


def run_case(trainer, case, workdir):
    name, arch, proj, steps, phase = case
    start = PHASES[phase]
    out = Path(workdir) / name
    cmd = [str(trainer), "step-dump", "--out", str(out), "--arch", arch, "--projector", proj,
           "--batch-size", str(BATCH), "--image-size", str(SIZE), "--seed", str(SEED),
           "--steps", str(steps), "--start-step", str(start), "--steps-per-epoch", str(STEPS_PER_EPOCH),
           "--epochs", str(EPOCHS), "--warmup-epochs", str(WARMUP_EPOCHS), "--lr-weights", str(LR_WEIGHTS),
           "--lr-biases", str(LR_BIASES), "--weight-decay", str(WEIGHT_DECAY), "--lambd", str(LAMBD)]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    t_barlow = time.time() - t0

    t0 = time.time()
    init, meta = read_safetensors(out / "init.safetensors")
    info = json.loads(meta["barlow.step_dump"])
    torch.manual_seed(SEED)
    model = BarlowTwins(arch, proj, lambd=LAMBD)
    report = Report()
    check_init(report, init, model)
    sd = {k: torch.from_numpy(np.array(init[k])) for k in init if not k.startswith("views.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k.startswith("bn.") or k.endswith("num_batches_tracked"))]
    if missing or unexpected:
        raise SystemExit(f"step_check: {name}: names differ from the official model's: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    model.train()
    ties = Ties()
    replay_relus(model, ties)
    opt = official_lars(model, WEIGHT_DECAY)
    mean = torch.tensor(info["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(info["std"]).view(1, 3, 1, 1)
    after, ameta = read_safetensors(out / "after.safetensors")
    ainfo = json.loads(ameta["barlow.step_dump"])
    losses = []
    for k in range(steps):
        lr = learning_rate(start + k, BATCH, STEPS_PER_EPOCH, EPOCHS, WARMUP_EPOCHS)
        set_learning_rates(opt, lr, LR_WEIGHTS, LR_BIASES)
        for g, (got, group) in enumerate(zip(info["lrs"][k], ("weights", "biases"))):
            report.add("lr", f"step {start + k} {group}", rel_err(got, opt.param_groups[g]["lr"]))
        # torchvision's ToTensor (x / 255) and Normalize ((x - mean) / std)
        y1, y2 = ((torch.from_numpy(np.array(init[f"views.{v}.{k}"])).float().div(255) - mean) / std
                  for v in "ab")
        i = 0
        while f"relu.{k}.{i}" in after:
            ties.queue.append(after[f"relu.{k}.{i}"])
            i += 1
        if i == 0:
            raise SystemExit(f"step_check: {name}: the dump has no ReLU decisions (relu.{k}.*): an older trainer?")
        model.zero_grad()
        loss = model(y1, y2)  # barlow forwards view a first: its running statistics see a, then b
        if ties.queue:
            raise SystemExit(f"step_check: {name}: barlow recorded {len(ties.queue)} more ReLU calls than the official model makes")
        loss.backward()
        losses.append(loss.item())
        del loss
        with accurate_norms():
            opt.step()
    t_torch = time.time() - t0
    del init

    for k, (got, ref) in enumerate(zip(ainfo["losses"], losses)):
        report.add("loss", f"step {start + k}", rel_err(got, ref))
    for pname, p in model.named_parameters():
        report.add("grad", pname, rel_err(after[f"grad.{steps - 1}.{pname}"], p.grad.numpy()))
        report.add("param", pname, rel_err(after[pname], p.detach().numpy()))
        report.add("momentum", pname, rel_err(after["lars.mu." + pname], opt.state[p]["mu"].numpy()))
    for bname, b in model.named_buffers():
        if bname.startswith("bn.") or bname.endswith("num_batches_tracked"):
            continue
        report.add("running", bname, rel_err(after[bname], b.numpy()))
    del after
    report.add_ties(ties)
    return report, losses, ties, t_barlow, t_torch


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        epilog="Cases: " + ", ".join(c[0] for c in CASES) + f" (batch {BATCH}, {SIZE}x{SIZE}, seed {SEED}; "
               f"warm-up = step {PHASES['warmup']}, after = step {PHASES['after']} of a "
               f"{WARMUP_EPOCHS}-epoch warm-up at {STEPS_PER_EPOCH} steps per epoch). The files go to a "
               "temporary folder (about 2.5 GB for an 8192 case), removed after each case.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trainer", default="target/release/trainer",
                    help="the trainer binary to check (default: %(default)s, from the repository root)")
    ap.add_argument("--case", action="append", choices=[c[0] for c in CASES],
                    help="run only this case (repeatable; default: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--worst", type=int, default=0, metavar="N",
                    help="also print the N worst tensors of each kind")
    ap.add_argument("--workdir", help="where the dumps go (default: a temporary folder)")
    a = ap.parse_args()
    trainer = Path(a.trainer)
    if not trainer.is_file():
        print(f"step_check: no trainer binary at {trainer} (cargo build --release -p trainer, or --trainer PATH)",
              file=sys.stderr)
        return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    cases = [c for c in CASES if not a.case or c[0] in a.case]
    print(f"step_check: barlow {trainer} vs official code on torch {torch.__version__} (CPU, FP32, "
          f"{torch.get_num_threads()} threads)", flush=True)
    failed = []
    for case in cases:
        with tempfile.TemporaryDirectory(dir=a.workdir, prefix="step_check.") as tmp:
            report, losses, ties, t_b, t_t = run_case(trainer, case, tmp)
        status = "FAIL" if report.failures else "ok"
        print(f"{case[0]}: {status}: loss {losses[-1]:.4f} | {report.line()} | barlow {t_b:.1f}s, torch {t_t:.1f}s",
              flush=True)
        for kind in KINDS if a.worst else []:
            top = sorted((e for e in report.all if e[0] == kind), key=lambda e: -e[2])[:a.worst]
            print(f"  {kind}: " + ", ".join(f"{n} {err:.1e}" for _, n, err in top), flush=True)
        for f in report.failures[:20]:
            print(f"  outside bound: {f}", flush=True)
        if len(report.failures) > 20:
            print(f"  ... and {len(report.failures) - 20} more", flush=True)
        if report.failures:
            failed.append(case[0])
    if failed:
        print(f"step_check: {len(failed)} of {len(cases)} cases FAILED: {', '.join(failed)}")
        return 1
    print(f"step_check: {len(cases)} of {len(cases)} cases within bounds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
