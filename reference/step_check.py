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

A tensor whose reference is all zeros (e.g. the residual branches' gradients at the first step
after zero-init) must be all zeros in barlow too. The official `bn.running_*` buffers have no
barlow counterpart (barlow keeps no running statistics for the loss's BatchNorm: they never enter
training) and are not compared.

ReLU ties: an activation within f32 rounding of 0 can take the other side of the kink in barlow
than in PyTorch and move one element's gradient through every layer below it. The ReLU inputs
whose sign is uncertain at f32 precision (from the same step rerun in float64) are flipped one at
a time in PyTorch's backward pass and a flip kept where it brings the gradients closer to
barlow's; the flips kept are printed. Results and open cases: reference/README.md.

Prints one line per case with the worst relative error per kind and its tensor; exits 1 if any
tensor of any case is outside its bound (each one named), 2 on a usage or setup error.

  cargo build --release -p trainer && python3 reference/step_check.py
  python3 reference/step_check.py --trainer target/debug/trainer --case r18-64-1-warmup
"""
import argparse
import copy
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

# a ReLU input below this many times PyTorch's own f32 error at it may round to the other side of
# 0 in barlow's f32 forward
KINK_K = 30
VERBOSE = False

BOUNDS = {"loss": 1e-5, "lr": 1e-12, "grad": 1e-4, "param": 1e-4, "momentum": 1e-4, "running": 1e-5}
KINDS = ["loss", "lr", "grad", "param", "momentum", "running", "init"]

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

    def add(self, kind, name, err, ok=None):
        self.count[kind] += 1
        if err > self.worst[kind][0] or not self.worst[kind][1]:
            self.worst[kind] = (err, name)
        if ok is None:
            ok = err <= BOUNDS[kind]
        if not ok:
            self.failures.append(f"{kind} {name}: {err:.3g}")

    def line(self):
        parts = []
        for k in KINDS:
            err, name = self.worst[k]
            if k == "init":
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


class _TapReLUFn(torch.autograd.Function):
    """ReLU whose backward mask (x > 0, PyTorch's) is kept where `explain_kink_flips` can flip
    single elements of it, and which keeps its upstream gradient."""

    @staticmethod
    def forward(ctx, x, record, name):
        ctx.mask = x > 0
        ctx.record = record
        record.append({"name": name, "x": x.detach(), "mask": ctx.mask, "gy": None})
        ctx.index = len(record) - 1
        return x.clamp_min(0)

    @staticmethod
    def backward(ctx, gy):
        ctx.record[ctx.index]["gy"] = gy
        return gy * ctx.mask, None, None


class TapReLU(torch.nn.Module):
    """Stands in for nn.ReLU (same forward, same gradient) and records each call."""

    def __init__(self, record, name):
        super().__init__()
        self.record = record
        self.name = name

    def forward(self, x):
        return _TapReLUFn.apply(x, self.record, self.name)


def tap_relus(model):
    """Replaces every nn.ReLU of `model` by a TapReLU; returns the shared record of calls."""
    record = []
    for pname, parent in list(model.named_modules()):
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(parent, name, TapReLU(record, f"{pname}.{name}"))
    return record


def grad_distance(model, barlow):
    """Sum over parameters of the squared relative gradient error against barlow's (`barlow`:
    name -> (f32 tensor, its norm))."""
    total = 0.0
    for name, p in model.named_parameters():
        ref, n = barlow[name]
        d = float(torch.linalg.vector_norm(ref - p.grad, dtype=torch.float64))
        total += (d / n) ** 2 if n > 0 else (0.0 if d == 0 else 1e30)
    return total


def explain_kink_flips(model, loss, record, record64, barlow):
    """ReLU ties. A ReLU input whose sign is uncertain at f32 precision (|x| below KINK_K times
    PyTorch's own f32 error there, |x32 - x64|, from the same step in float64) can fall on the
    other side of the kink in barlow's f32 forward than in PyTorch's; that moves the element's
    upstream gradient into (or out of) every layer below: a difference of f32 rounding, not of
    the computation. The gradients are computed with PyTorch's masks; then each such element is
    flipped in turn, the backward pass rerun, and the flip kept if it brings the gradients closer
    to barlow's (sum of squared relative errors over all parameters). Leaves the gradients of
    the kept masks in .grad; returns the kept flips as (call number, index, |x64|) and the
    number of candidates."""
    def backward():
        model.zero_grad()
        loss.backward(retain_graph=True)
        return grad_distance(model, barlow)

    best = backward()
    candidates = []
    for call, (r, r64) in enumerate(zip(record, record64)):
        if r["gy"] is None:
            continue
        x64 = r64["x"]
        err = (r["x"].double() - x64).abs()
        near = (x64.abs() < KINK_K * err) & (r["gy"] != 0)
        for i in near.flatten().nonzero().flatten().tolist():
            candidates.append((call, i, abs(float(x64.flatten()[i]))))
    kept = []
    if VERBOSE:
        print(f"  {len(candidates)} ReLU inputs near 0", file=sys.stderr, flush=True)
    for call, i, rel in candidates:
        m = record[call]["mask"].view(-1)
        m[i] = ~m[i]
        d = backward()
        if d < best:
            best = d
            kept.append((call, i, rel))
        else:
            m[i] = ~m[i]
    if candidates and (not kept or kept[-1][:2] != candidates[-1][:2]):
        backward()  # the gradients of the kept masks
    return kept, len(candidates)


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
    record = tap_relus(model)
    opt = official_lars(model, WEIGHT_DECAY)
    mean = torch.tensor(info["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(info["std"]).view(1, 3, 1, 1)
    after, ameta = read_safetensors(out / "after.safetensors")
    ainfo = json.loads(ameta["barlow.step_dump"])
    losses, flips, near = [], [], 0
    for k in range(steps):
        lr = learning_rate(start + k, BATCH, STEPS_PER_EPOCH, EPOCHS, WARMUP_EPOCHS)
        set_learning_rates(opt, lr, LR_WEIGHTS, LR_BIASES)
        for g, (got, group) in enumerate(zip(info["lrs"][k], ("weights", "biases"))):
            report.add("lr", f"step {start + k} {group}", rel_err(got, opt.param_groups[g]["lr"]))
        # torchvision's ToTensor (x / 255) and Normalize ((x - mean) / std)
        y1, y2 = ((torch.from_numpy(np.array(init[f"views.{v}.{k}"])).float().div(255) - mean) / std
                  for v in "ab")
        # the same step in float64: how far f32 rounding moves each ReLU input
        model64 = copy.deepcopy(model).double()
        record64 = model64.backbone.relu.record
        record64.clear()
        with torch.no_grad():
            model64(y1.double(), y2.double())
        del model64
        record.clear()
        loss = model(y1, y2)  # barlow forwards view a first: its running statistics see a, then b
        barlow = {}
        for n, _ in model.named_parameters():
            t = torch.from_numpy(np.array(after[f"grad.{k}.{n}"]))
            barlow[n] = (t, float(torch.linalg.vector_norm(t, dtype=torch.float64)))
        step_flips, n_near = explain_kink_flips(model, loss, record, record64, barlow)
        step_flips = [(f"step {start + k} {record[c]['name']}", i, v) for c, i, v in step_flips]
        flips += step_flips
        near += n_near
        record.clear()
        losses.append(loss.item())
        del loss
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
    return report, losses, flips, near, t_barlow, t_torch


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
    ap.add_argument("--workdir", help="where the dumps go (default: a temporary folder)")
    ap.add_argument("--verbose", action="store_true", help="say how many ReLU ties each step has")
    a = ap.parse_args()
    global VERBOSE
    VERBOSE = a.verbose
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
            report, losses, flips, near, t_b, t_t = run_case(trainer, case, tmp)
        status = "FAIL" if report.failures else "ok"
        kinks = ", ".join(f"{n}[{i}] x={v:.0e}" for n, i, v in flips) or "none"
        print(f"{case[0]}: {status}: loss {losses[-1]:.4f} | {report.line()} | ReLU ties taken the other way: "
              f"{len(flips)} of {near} ({kinks}) | barlow {t_b:.1f}s, torch {t_t:.1f}s",
              flush=True)
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
