#!/usr/bin/env python3
"""Does each training step of barlow do what a step of the official Barlow Twins code does?

For each case, runs barlow's real training steps (`trainer step-dump`: a seeded model, seeded u8
view batches, the training loop's own step) and loads its state and batches into the official
PyTorch code (facebookresearch/barlowtwins main.py, as `official_bt.py` holds it: torchvision
ResNet with zero_init_residual, the projector, BatchNorm1d(affine=False) and the loss, LARS with
its two parameter groups, adjust_learning_rate), runs the same steps there in FP32 on the CPU
(main.py's autocast/GradScaler left out), each step from barlow's state before it (parameters,
running statistics, LARS momentum: one step's rounding does not carry into the next), and
compares, per tensor and step, the relative error ||barlow - torch|| / ||torch|| (norm) and the
worst row's (row: the largest ||row error|| over the rows of the first axis, each divided by its
reference row's norm, or by ROW_FLOOR = 0.1 of the reference's RMS row norm where that is larger,
so that rows near zero do not divide by nearly nothing; output channels of a convolution, output
features of a linear layer, single channels of a 1-D tensor). One wrong row of an 8192x8192
weight moves the norm by 1/90 of its error; the row error is that error.

  kind       what (every step)                                      norm    row
  loss       the loss                                               1e-5    -
  lr         both groups' learning rate                             1e-12   -
  grad       every parameter's gradient                             1e-4    1e-3
  update     every parameter's change p_after - p_before, against   1e-2    1e-1
             the official change from the same p_before (below)
  param      every parameter after the step                         1e-4    1e-3
  momentum   every LARS momentum buffer after the step              1e-4    1e-3
  running    every BatchNorm running mean and variance's change,    1e-5    1e-4
             against the official change
  pre, ties  every ReLU's input and decision (below)
  init       barlow's initialisation against torchvision's: constants (BatchNorm weights,
             zero-init residual gammas, biases, running statistics) exactly equal; random
             tensors (kaiming-normal convolutions, uniform linear layers) with a standard
             deviation within 5% and a mean within 5 standard errors

Updates: LARS changes a weight by about lr * 1e-3 of itself per step (1e-6 to 4e-5 here), far
below any bound on the parameters, so a dropped or sign-flipped update passes a parameter
comparison (an error of 1 or 2 of the update). The update's own floor is float32 rounding of the
parameters: an update of 1e-6 of a weight is ~16 float32 steps of it, and where barlow's and the
official momentum differ by 1e-5 the two rounded parameters differ by one step in a few elements
(measured up to 1.0e-3 of the update's norm, 1.7e-2 of a row's; a BatchNorm parameter's update
at the warm-up's learning rates is a few steps).

The official LARS's `torch.norm` is computed in float64 (see `accurate_norms`): PyTorch's own
CPU float32 norm is up to 4e-3 off on the 8192-wide projector's weights.

A tensor whose reference is all zeros (e.g. the residual branches' gradients at the first step
after zero-init) must be all zeros in barlow too. The official `bn.running_*` buffers have no
barlow counterpart (barlow keeps no running statistics for the loss's BatchNorm: they never enter
training) and are not compared.

ReLU ties: an input within f32 rounding of 0 can fall on the other side of the kink in barlow
than in PyTorch, and one such element moves a gradient through every layer below it: a
difference of rounding, not of the computation. `trainer step-dump` therefore records every
ReLU's decisions (which inputs were above 0), the inputs themselves and each input's local
magnitude m, the size of the terms it was summed from, which its rounding error scales with (a
fused BatchNorm's |scale| * rms(x) + |shift| of the channel; add_relu's two addends' channel rms,
each where that addend is not exactly 0; see trainer/src/nn/relu_masks.rs). The official model
replays the decisions in forward and backward, so that the bounds above compare the computation
itself. What makes that safe is checked, per call, elementwise:

  pre        |x_barlow - x_torch| <= PRE_REL m (512 float32 steps; see PRE_REL)
  ties       barlow's decisions are the signs of its recorded inputs, and wherever one differs
             from PyTorch's own (x > 0), both inputs are within TIE_REL m of 0 (64 float32
             steps: |x_barlow| <= TIE_REL m and |x_torch| <= TIE_REL m), at most TIE_CAP (4)
             such elements per call

Prints one line per case with the worst error per kind and its tensor (and the worst row's);
exits 1 if any tensor of any case is outside its bound (each one named), 2 on a usage or setup
error.

--self-test runs the check against deliberately broken dumps too (`mutations.py`: one
convolution's update dropped, one BatchNorm's gradient sign flipped, lambda 10% off, one row of
the projector's gradient and one of its weight 1% off, the running variance updated with the
biased estimate) and fails unless each of them fails with the planted tensor named.

  cargo build --release -p trainer && python3 reference/step_check.py
  python3 reference/step_check.py --trainer target/debug/trainer --case r18-64-1-warmup --self-test
"""
import argparse
import contextlib
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mutations  # noqa: E402
from safetensors_np import read_safetensors  # noqa: E402
from official_bt import BarlowTwins, learning_rate, official_lars, set_learning_rates  # noqa: E402

# warm-up: 10 epochs of 2 steps = steps 0..19; step 5 is inside it, step 25 after it
STEPS_PER_EPOCH, EPOCHS, WARMUP_EPOCHS = 2, 100, 10
LR_WEIGHTS, LR_BIASES, WEIGHT_DECAY, LAMBD = 0.2, 0.0048, 1.5e-6, 0.0051
BATCH, SIZE, SEED = 8, 64, 0
PHASES = {"warmup": 5, "after": 25}

# (name, arch, projector, steps, phase): each architecture with each projector, and each of
# (1 step, 3 steps) x (inside warm-up, after it) once; r18-8192-1-after is CI's 8192 case
CASES = [
    ("r18-64-1-warmup", "resnet18", "64-64-64", 1, "warmup"),
    ("r18-8192-1-after", "resnet18", "8192-8192-8192", 1, "after"),
    ("r18-8192-3-after", "resnet18", "8192-8192-8192", 3, "after"),
    ("r50-64-3-warmup", "resnet50", "64-64-64", 3, "warmup"),
    ("r50-8192-1-after", "resnet50", "8192-8192-8192", 1, "after"),
]

EPS32 = 2.0 ** -23  # float32's rounding step at 1
# ReLU inputs, elementwise against their local magnitude m (see the module's docstring):
# - pre: barlow's and PyTorch's inputs differ by at most PRE_REL m: the rounding of every layer
#   below, measured up to 154 steps (in the 8192-wide projector's hidden layer: sums of 8192
#   products) and 105 in the backbones;
# - ties: a differing decision is a tie only where both inputs are within TIE_REL m of 0, 64
#   steps: the rounding a tie can carry (the worst measured is 19 steps, the worst gap outside
#   the projector 105: half of that on each side), 1/13 of the old rule's 1e-4 of the call's
#   rms; at most TIE_CAP of them per call (measured: 2)
PRE_REL = 512 * EPS32
TIE_REL = 64 * EPS32
TIE_CAP = 4

BOUNDS = {"loss": 1e-5, "lr": 1e-12, "grad": 1e-4, "update": 1e-2, "param": 1e-4, "momentum": 1e-4,
          "running": 1e-5, "pre": PRE_REL, "ties": TIE_REL}
ROW_BOUNDS = {"grad": 1e-3, "update": 1e-1, "param": 1e-3, "momentum": 1e-3, "running": 1e-4}
# a row's error is relative to its reference's norm, or to ROW_FLOOR of the RMS row norm where
# the row is smaller (a 1-D tensor's channels near 0)
ROW_FLOOR = 0.1
KINDS = ["loss", "lr", "grad", "update", "param", "momentum", "running", "pre", "ties", "init"]

def rel_errors(x, ref, base=None):
    """(norm, row) relative errors of `x` against `ref` in f64 (see the module's docstring), or
    of the changes `x - base` against `ref - base`; for an all-zero reference, 0 if `x`'s is all
    zeros too, else inf."""
    d = np.asarray(x, dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64) - (0.0 if base is None else np.asarray(base, dtype=np.float64))
    rows = max(ref.shape[0], 1) if ref.ndim else 1
    d, ref = d.reshape(rows, -1), ref.reshape(rows, -1)
    row_d = np.sqrt(np.square(d).sum(axis=1))
    row_ref = np.sqrt(np.square(ref).sum(axis=1))
    total = math.sqrt(float(np.square(row_ref).sum()))
    if total == 0:
        err = 0.0 if not row_d.any() else math.inf
        return err, err
    norm = math.sqrt(float(np.square(row_d).sum())) / total
    row = float((row_d / np.maximum(row_ref, ROW_FLOOR * total / math.sqrt(rows))).max())
    return norm, row


@dataclass
class Failure:
    kind: str
    measure: str  # "norm", "row", "count", ...
    name: str
    err: float
    bound: float

    def __str__(self):
        return f"{self.kind} {self.measure} {self.name}: {self.err:.3g} (bound {self.bound:.1g})"


class Memo:
    """`rel_errors` of arrays already compared: the self-test's broken dumps share all but a few
    of their arrays (the same objects) with the real one, whose errors are the same. Once
    `frozen`, it remembers nothing new (a broken dump's own arrays)."""

    def __init__(self):
        self.seen = {}  # ids -> (the arrays, kept alive so that ids stay theirs; errors)
        self.frozen = False

    def rel_errors(self, *arrays):
        key = tuple(map(id, arrays))
        hit = self.seen.get(key)
        if hit is not None:
            return hit[1]
        errors = rel_errors(*arrays)
        if not self.frozen:
            self.seen[key] = (arrays, errors)
        return errors


class Report:
    """Worst error per kind and measure, and every tensor outside its bound."""

    def __init__(self, memo=None):
        self.memo = memo or Memo()
        self.worst = {}  # (kind, measure) -> (error, name)
        self.count = {k: 0 for k in KINDS}
        self.failures = []
        self.all = []  # (kind, measure, name, error) of every comparison
        self.notes = {}  # kind -> extra text for its summary

    def add(self, kind, name, err, measure="norm", bound=None, ok=None):
        """One error; outside `bound` (default: the kind's) unless `ok` says otherwise."""
        if measure == "norm":
            self.count[kind] += 1
        self.all.append((kind, measure, name, err))
        if err > self.worst.get((kind, measure), (-1.0, ""))[0]:
            self.worst[(kind, measure)] = (err, name)
        if bound is None:
            bound = (ROW_BOUNDS if measure == "row" else BOUNDS).get(kind, math.inf)
        if not (err <= bound if ok is None else ok):
            self.failures.append(Failure(kind, measure, name, err, bound))

    def compare(self, kind, name, got, ref, base=None):
        """The norm and row errors of one tensor (of its change from `base`, if given)."""
        norm, row = self.memo.rel_errors(got, ref, base)
        self.add(kind, name, norm)
        if np.ndim(ref) >= 1 and np.shape(ref)[0] > 1:
            self.add(kind, name, row, measure="row")

    def line(self):
        parts = []
        for k in KINDS:
            if k == "init":
                bad = any(f.kind == "init" for f in self.failures)
                parts.append(f"init {self.count[k]} tensors {'MISMATCH' if bad else 'ok'}")
                continue
            err, name = self.worst.get((k, "norm"), (0.0, "none"))
            text = f"{k} {err:.1e} ({name}"
            if (k, "row") in self.worst:
                rerr, rname = self.worst[(k, "row")]
                text += f"; row {rerr:.1e} {rname}" if rname != name else f"; row {rerr:.1e}"
            parts.append(text + f", {self.count[k]}){self.notes.get(k, '')}")
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


class Dump:
    """The files of a `trainer step-dump` run: `init` (the state before the first step, the
    batches) with its `info`, and `after`, every `step<k>.safetensors` under one roof: the state
    after step k as `state.<k>.<name>` (momentum `state.<k>.lars.mu.<name>`), its gradients
    `grad.<k>.<name>` and ReLU records `relu.<k>.<i>[.pre|.magnitude]`, with the last step's info
    (every loss) as `after_info`. `with_changes` makes a copy with some `after` tensors replaced
    (the self-test's mutations)."""

    def __init__(self, folder):
        self.init, meta = read_safetensors(Path(folder) / "init.safetensors")
        self.info = json.loads(meta["barlow.step_dump"])
        self.steps = self.info["steps"]
        self.after = {}
        for k in range(self.steps):
            tensors, meta = read_safetensors(Path(folder) / f"step{k}.safetensors")
            for name, t in tensors.items():
                prefix = "" if name.startswith(("grad.", "relu.")) else "state."
                kind, _, rest = (prefix + name).partition(".")
                self.after[f"{kind}.{k}.{rest}"] = t
        self.after_info = json.loads(meta["barlow.step_dump"])
        self.changed = None  # with_changes' names

    @staticmethod
    def state_key(k, name):
        """`after`'s name of `name` (a parameter, running statistic or `lars.mu.<parameter>`)
        after step k."""
        return f"state.{k}.{name}"

    def state(self, k, name):
        """`name` after step k; k = -1: before the first (no momentum there)."""
        return self.init[name] if k < 0 else self.after[self.state_key(k, name)]

    def step_inputs(self, k):
        """{name: array} of what the official step k reads: barlow's state before it, the step's
        batches and ReLU records."""
        if k == 0:
            before = {n: t for n, t in self.init.items() if not n.startswith("views.")}
        else:
            before = {n: t for n, t in self.after.items() if n.startswith(f"state.{k - 1}.")}
        records = {n: t for n, t in self.after.items() if n.startswith(f"relu.{k}.")}
        return {**before, **records, **{f"views.{v}.{k}": self.init[f"views.{v}.{k}"] for v in "ab"}}

    def step_inputs_differ(self, k, other):
        """Whether the official step k made from `other` is not this dump's (see `step_inputs`)."""
        if self.changed is not None and self.init is other.init:  # other with_changes
            return any(n in self.changed for n in self.step_inputs(k))
        mine, theirs = self.step_inputs(k), other.step_inputs(k)
        return mine.keys() != theirs.keys() or not all(np.array_equal(mine[n], theirs[n]) for n in mine)

    def relu_calls(self, k):
        """Step k's ReLU records, in call order: (name, decisions, inputs, magnitudes)."""
        out = []
        while f"relu.{k}.{len(out)}" in self.after:
            name = f"relu.{k}.{len(out)}"
            out.append((name, self.after[name], self.after[name + ".pre"], self.after[name + ".magnitude"]))
        if not out:
            raise SystemExit(f"step_check: the dump has no ReLU decisions (relu.{k}.*): an older trainer?")
        return out

    def with_changes(self, changes):
        """A copy whose `after` has `changes` ({name: array}) in place of its own tensors."""
        unknown = [n for n in changes if n not in self.after]
        if unknown:
            raise KeyError(f"no such tensors in the dump: {unknown}")
        copy = object.__new__(Dump)
        copy.__dict__.update(self.__dict__)
        copy.after = {**self.after, **changes}
        copy.changed = set(changes)
        return copy


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
    """Stands in for an nn.ReLU: applies the next of barlow's recorded decisions from `calls`,
    which keeps PyTorch's own input."""

    def __init__(self, calls, name):
        super().__init__()
        self.calls = calls
        self.name = name

    def forward(self, x):
        return _ReplayReLUFn.apply(x, self.calls.take(self.name, x))


class ReluCalls:
    """Feeds one forward pass barlow's ReLU decisions and keeps PyTorch's inputs, channel-major
    as barlow's (`(C, B*H*W)` maps, `(F, B)` vectors)."""

    def __init__(self):
        self.queue = []  # barlow's decisions for the pass being run
        self.inputs = []  # (module name, PyTorch's input) of every call so far

    def take(self, name, x):
        if not self.queue:
            raise SystemExit(f"step_check: {name}: barlow recorded fewer ReLU calls than the official model makes")
        m = self.queue.pop(0)
        if x.dim() == 4:  # barlow's (C, B*H*W) <-> (B, C, H, W)
            b, c, h, w = x.shape
            to_torch = lambda t: t.view(c, b, h, w).permute(1, 0, 2, 3)  # noqa: E731
            mine = x.detach().permute(1, 0, 2, 3).reshape(c, b * h * w)
        else:  # barlow's (F, B) <-> (B, F)
            to_torch, mine = lambda t: t.t(), x.detach().t()  # noqa: E731
        if tuple(m.shape) != tuple(mine.shape):
            raise SystemExit(f"step_check: {name}: barlow's ReLU call is {m.shape[0]}x{m.shape[1]}, "
                             f"PyTorch's {tuple(x.shape)}")
        self.inputs.append((name, mine.contiguous().numpy().copy()))
        return to_torch(torch.from_numpy(np.array(m)).bool()).contiguous()


def replay_relus(model, calls):
    """Replaces every nn.ReLU of `model` by a ReplayReLU drawing from `calls`."""
    for pname, parent in list(model.named_modules()):
        for name, child in parent.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(parent, name, ReplayReLU(calls, f"{pname}.{name}"))


def count_bn_elements(model):
    """{BatchNorm's name: elements per channel of its last input} (its batch statistics' n),
    kept up to date by forward hooks."""
    counts = {}
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.register_forward_hook(lambda mod, inp, out, name=name: counts.__setitem__(
                name, inp[0].numel() // inp[0].shape[1]))
    return counts


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


def run_barlow(trainer, case, out, lambd=LAMBD):
    """`trainer step-dump` for `case` into the folder `out`; returns (its Dump, seconds)."""
    name, arch, proj, steps, phase = case
    cmd = [str(trainer), "step-dump", "--out", str(out), "--arch", arch, "--projector", proj,
           "--batch-size", str(BATCH), "--image-size", str(SIZE), "--seed", str(SEED),
           "--steps", str(steps), "--start-step", str(PHASES[phase]), "--steps-per-epoch", str(STEPS_PER_EPOCH),
           "--epochs", str(EPOCHS), "--warmup-epochs", str(WARMUP_EPOCHS), "--lr-weights", str(LR_WEIGHTS),
           "--lr-biases", str(LR_BIASES), "--weight-decay", str(WEIGHT_DECAY), "--lambd", str(lambd)]
    t0 = time.time()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return Dump(out), time.time() - t0


@dataclass
class Official:
    """What the official code computed from a dump's initial state, batches and ReLU decisions."""
    losses: list = field(default_factory=list)
    lrs: list = field(default_factory=list)  # (weights, biases) per step
    grads: list = field(default_factory=list)  # {parameter: gradient} per step
    states: list = field(default_factory=list)  # {parameter, running statistic or momentum: value} per step
    relu_inputs: list = field(default_factory=list)  # [(module name, input)] per step
    bn_elements: dict = field(default_factory=dict)  # {BatchNorm: elements per channel}
    params: list = field(default_factory=list)  # parameter names
    buffers: list = field(default_factory=list)  # running statistics' names
    init: Report = None  # barlow's initialisation against torchvision's


def load_state(model, opt, dump, k):
    """barlow's state after step k (k = -1: its initialisation) into the official model and LARS:
    parameters, running statistics and momentum."""
    names = [n for n, _ in model.named_parameters()] + [
        n for n, _ in model.named_buffers() if not (n.startswith("bn.") or n.endswith("num_batches_tracked"))]
    model.load_state_dict({n: torch.from_numpy(np.array(dump.state(k, n))) for n in names}, strict=False)
    for n, p in model.named_parameters():
        if k >= 0:
            opt.state[p]["mu"] = torch.from_numpy(np.array(dump.state(k, "lars.mu." + n)))


STEP_FIELDS = ("losses", "lrs", "grads", "states", "relu_inputs")  # Official's lists by step


def run_official(case, dump, reuse=None):
    """The case's steps in the official code, each from barlow's state before it (the first from
    `dump`'s initial state), on the dump's batches, with its ReLU decisions replayed: every step
    is compared from the same state, so one step's differences do not carry into the next's.
    `reuse` = (a dump, its Official): the steps whose inputs are that dump's are taken from it."""
    name, arch, proj, steps, phase = case
    start = PHASES[phase]
    differ = [reuse is None or dump.step_inputs_differ(k, reuse[0]) for k in range(steps)]
    if not any(differ):
        return reuse[1]
    torch.manual_seed(SEED)
    model = BarlowTwins(arch, proj, lambd=LAMBD)
    res = Official(init=Report())
    check_init(res.init, dump.init, model)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in dump.init.items() if not k.startswith("views.")}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k.startswith("bn.") or k.endswith("num_batches_tracked"))]
    if missing or unexpected:
        raise SystemExit(f"step_check: {name}: names differ from the official model's: missing "
                         f"{missing[:5]}, unexpected {unexpected[:5]}")
    model.train()
    calls = ReluCalls()
    replay_relus(model, calls)
    res.bn_elements = count_bn_elements(model)
    opt = official_lars(model, WEIGHT_DECAY)
    mean = torch.tensor(dump.info["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(dump.info["std"]).view(1, 3, 1, 1)
    named = dict(model.named_parameters())
    res.params = list(named)
    running = {n: b for n, b in model.named_buffers()
               if not (n.startswith("bn.") or n.endswith("num_batches_tracked"))}
    res.buffers = list(running)
    for k in range(steps):
        if not differ[k]:
            for f in STEP_FIELDS:
                getattr(res, f).append(getattr(reuse[1], f)[k])
            continue
        load_state(model, opt, dump, k - 1)
        lr = learning_rate(start + k, BATCH, STEPS_PER_EPOCH, EPOCHS, WARMUP_EPOCHS)
        set_learning_rates(opt, lr, LR_WEIGHTS, LR_BIASES)
        res.lrs.append(tuple(g["lr"] for g in opt.param_groups))
        # torchvision's ToTensor (x / 255) and Normalize ((x - mean) / std)
        y1, y2 = ((torch.from_numpy(np.array(dump.init[f"views.{v}.{k}"])).float().div(255) - mean) / std
                  for v in "ab")
        calls.queue = [decisions for _, decisions, _, _ in dump.relu_calls(k)]
        calls.inputs = []
        model.zero_grad()
        loss = model(y1, y2)  # barlow forwards view a first: its running statistics see a, then b
        if calls.queue:
            raise SystemExit(f"step_check: {name}: barlow recorded {len(calls.queue)} more ReLU calls "
                             "than the official model makes")
        res.relu_inputs.append(calls.inputs)
        loss.backward()
        res.losses.append(loss.item())
        del loss
        res.grads.append({n: p.grad.numpy().copy() for n, p in named.items()})
        with accurate_norms():
            opt.step()
        state = {n: p.detach().numpy().copy() for n, p in named.items()}
        state.update({n: b.numpy().copy() for n, b in running.items()})
        state.update({"lars.mu." + n: opt.state[p]["mu"].numpy().copy() for n, p in named.items()})
        res.states.append(state)
    return res


def compare_relus(report, dump, official):
    """The `pre` and `ties` kinds: barlow's ReLU inputs against PyTorch's, and every decision
    that differs from PyTorch's own a tie (see the module's docstring)."""
    differ = elements = 0
    for k, torch_inputs in enumerate(official.relu_inputs):
        for (call, decisions, pre, magnitude), (module, x) in zip(dump.relu_calls(k), torch_inputs):
            name = f"{call} ({module})"
            pre, m, keep = np.asarray(pre), np.asarray(magnitude, dtype=np.float64), np.asarray(decisions) == 1
            elements += pre.size
            if not np.array_equal(keep, pre > 0):
                report.add("ties", name + ": barlow's decisions are not the signs of its inputs", math.inf,
                           measure="sign")
            gap = np.abs(pre.astype(np.float64) - x)
            with np.errstate(divide="ignore", invalid="ignore"):
                report.add("pre", name, float(np.where(gap == 0, 0.0, gap / m).max()))
                flips = keep != (x > 0)
                n = int(flips.sum())
                differ += n
                if n:
                    both = np.maximum(np.abs(pre[flips]), np.abs(x[flips])) / m[flips]
                    report.add("ties", name, float(both.max()))
                    report.add("ties", name, n, measure="count", bound=TIE_CAP)
    report.count["ties"] = differ
    most = report.worst.get(("ties", "count"), (0, ""))[0]
    steps = {k: report.worst.get((k, "norm"), (0.0, ""))[0] / EPS32 for k in ("pre", "ties")}
    report.notes["pre"] = f" = {steps['pre']:.0f} float32 steps of m"
    report.notes["ties"] = (f" of {elements} decisions differ, at most {most} in a call; "
                            f"{steps['ties']:.0f} steps")


def compare(case, dump, official, memo=None):
    """The Report of a dump against the official run made from it."""
    report = Report(memo)
    report.failures += official.init.failures
    report.count["init"] = official.init.count["init"]
    start = PHASES[case[4]]
    steps = len(official.losses)
    for k in range(steps):
        step = f"step {start + k}"
        for g, group in enumerate(("weights", "biases")):
            report.add("lr", f"{step} {group}", abs(dump.info["lrs"][k][g] / official.lrs[k][g] - 1))
        report.add("loss", step, rel_errors(dump.after_info["losses"][k], official.losses[k])[0])
        ref = official.states[k]
        for name in official.params:
            report.compare("grad", f"{step} {name}", dump.after[f"grad.{k}.{name}"], official.grads[k][name])
            report.compare("param", f"{step} {name}", dump.state(k, name), ref[name])
            mu = "lars.mu." + name
            report.compare("momentum", f"{step} {name}", dump.state(k, mu), ref[mu])
        for name in official.params + official.buffers:
            # both changes from barlow's state before the step, where the official step began
            kind = "update" if name in official.params else "running"
            report.compare(kind, f"{step} {name}", dump.state(k, name), ref[name], dump.state(k - 1, name))
    compare_relus(report, dump, official)
    return report


def print_report(case_name, report, official, seconds, worst):
    status = "FAIL" if report.failures else "ok"
    print(f"{case_name}: {status}: loss {official.losses[-1]:.4f} | {report.line()} | {seconds}", flush=True)
    for kind in KINDS if worst else []:
        for measure in ("norm", "row"):
            top = sorted((e for e in report.all if e[:2] == (kind, measure)), key=lambda e: -e[3])[:worst]
            if top:
                print(f"  {kind} {measure}: " + ", ".join(f"{n} {err:.1e}" for _, _, n, err in top), flush=True)
    for f in report.failures[:20]:
        print(f"  outside bound: {f}", flush=True)
    if len(report.failures) > 20:
        print(f"  ... and {len(report.failures) - 20} more", flush=True)


def self_test(trainer, case, dump, official, memo, tmp):
    """Runs the check against each of `mutations.MUTATIONS` planted in `dump`; returns the
    descriptions of those it did not catch as planted."""
    missed = []
    for mutation in mutations.MUTATIONS:
        t0 = time.time()
        if mutation.lambd_factor is not None:  # barlow's own run with lambda off
            broken, _ = run_barlow(trainer, case, Path(tmp) / "lambd", lambd=LAMBD * mutation.lambd_factor)
        else:
            broken = dump.with_changes(mutation.changes(dump, official))
        # the official steps whose inputs the mutation reaches run again
        failures = compare(case, broken, run_official(case, broken, reuse=(dump, official)), memo).failures
        del broken
        shutil.rmtree(Path(tmp) / "lambd", ignore_errors=True)
        caught, stray = mutations.judge(mutation, failures, dump, PHASES[case[4]])
        verdict = "caught" if caught and not stray else "MISSED"
        print(f"  self-test {mutation.name}: {verdict}: {len(failures)} outside bounds, "
              f"{len(caught)} as planted ({caught[0] if caught else 'none'})"
              + (f", {len(stray)} elsewhere ({stray[0]})" if stray else "") + f" [{time.time() - t0:.1f}s]",
              flush=True)
        if verdict != "caught":
            missed.append(f"{case[0]}: {mutation.name}")
    return missed


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
    ap.add_argument("--self-test", action="store_true",
                    help="also check that the check fails on each of mutations.py's planted bugs")
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
    failed, missed = [], []
    for case in cases:
        with tempfile.TemporaryDirectory(dir=a.workdir, prefix="step_check.") as tmp:
            dump, t_barlow = run_barlow(trainer, case, Path(tmp) / case[0])
            t0 = time.time()
            official = run_official(case, dump)
            t_torch = time.time() - t0
            t0 = time.time()
            memo = Memo()
            report = compare(case, dump, official, memo)
            memo.frozen = True
            t_compare = time.time() - t0
            print_report(case[0], report, official,
                         f"barlow {t_barlow:.1f}s, torch {t_torch:.1f}s, compare {t_compare:.1f}s", a.worst)
            if report.failures:
                failed.append(case[0])
            if a.self_test:
                missed += self_test(trainer, case, dump, official, memo, tmp)
            del dump, memo
    if missed:
        print(f"step_check: the self-test MISSED {len(missed)} planted bugs: {', '.join(missed)}")
    if failed:
        print(f"step_check: {len(failed)} of {len(cases)} cases FAILED: {', '.join(failed)}")
    if failed or missed:
        return 1
    print(f"step_check: {len(cases)} of {len(cases)} cases within bounds"
          + (f"; each of the {len(mutations.MUTATIONS)} planted bugs caught in each" if a.self_test else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
