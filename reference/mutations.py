"""Deliberately broken step dumps: `step_check.py --self-test` runs the check against each and
fails unless the check fails with the planted tensor named (issue 29), so a weakened check
cannot land.

Each mutation but one is a copy of a real dump with tensors of `after.safetensors` replaced (in
memory; the rest of the dump is the real one, and the official code runs again where the
mutation reaches what it reads: the states between steps, the ReLU records). Lambda off by 10%
is barlow's own run (`trainer step-dump --lambd`, 1.1 x the check's lambda) checked
against the official code at the right lambda: a wrong lambda reaching the loss, as a bug in its
plumbing would.

Each mutation says where the check must fail (kind, measure, tensor); `local` ones must fail at
no other tensor at the first step, since only that tensor was touched (the official code runs
each step from barlow's state before it, so a broken state may move other tensors later on).
"""
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

CONV = "backbone.layer3.0.conv2.weight"  # in ResNet-18 and -50
BN = "backbone.bn1.weight"  # the stem's: a residual branch's has no gradient at step 0 after zero-init
ROW = 5  # the projector row made wrong
ROW_ERROR = 0.01
LAMBDA_FACTOR = 1.1
BN_MOMENTUM = 0.1  # torch's default, barlow's too
# the flipped ReLU decision's input, in local magnitudes: twice step_check's TIE_REL (64 float32
# steps); the two inputs then differ by half its PRE_REL, so only the tie rule can see it
NOT_A_TIE = 128 * 2.0 ** -23


@dataclass
class Mutation:
    name: str
    kind: str  # the kind of check that must fail
    measure: Optional[str]  # "norm", "row" or None (either)
    tensor: Callable  # (dump) -> the name that must be named (the failure's last or first word)
    changes: Callable = None  # (dump, official) -> {after's name: new array}
    lambd_factor: Optional[float] = None  # instead of changes: barlow's run with lambda times this
    local: bool = True  # no failure at the first step may name another tensor


def last_projector_weight(dump):
    """The projector's last linear layer's weight (`projector.<i>.weight`, largest i)."""
    names = [n for n in dump.init if n.startswith("projector.") and n.endswith(".weight")]
    return max(names, key=lambda n: int(n.split(".")[1]))


def drop_conv_update(dump, official):
    """`CONV` never moves: its state after every step is its initial value."""
    return {dump.state_key(k, CONV): np.array(dump.init[CONV]) for k in range(dump.steps)}


def flip_bn_gradient(dump, official):
    """`BN`'s gradient at the first step (not the last one in a 3-step case) with its sign flipped."""
    name = f"grad.0.{BN}"
    return {name: -np.asarray(dump.after[name])}


def projector_row(dump, official):
    """One row (`ROW`) of the projector's last weight's first-step gradient off by `ROW_ERROR`."""
    name = f"grad.0.{last_projector_weight(dump)}"
    g = np.array(dump.after[name])
    g[ROW] *= 1 + ROW_ERROR
    return {name: g}


def projector_weight_row(dump, official):
    """One row (`ROW`) of the projector's last weight after the last step off by `ROW_ERROR`."""
    name = dump.state_key(dump.steps - 1, last_projector_weight(dump))
    w = np.array(dump.after[name])
    w[ROW] *= 1 + ROW_ERROR
    return {name: w}


def flip_relu_decision(dump, official):
    """The first ReLU call's decision flipped, and its recorded input negated, where the input is
    no tie: the smallest |input| of at least `NOT_A_TIE` times its local magnitude. The official
    run replays the flipped decision, and PyTorch's own input disagrees with it."""
    name = "relu.0.0"
    pre = np.array(dump.after[name + ".pre"])
    ratio = np.abs(pre) / np.asarray(dump.after[name + ".magnitude"])
    i = np.unravel_index(np.argmin(np.where(ratio >= NOT_A_TIE, ratio, np.inf)), pre.shape)
    decisions = np.array(dump.after[name])
    decisions[i] ^= 1
    pre[i] = -pre[i]
    return {name: decisions, name + ".pre": pre}


def biased_running_var(dump, official):
    """Every BatchNorm's running variance updated with the biased batch variance, as if
    `r = (1 - m) r + m var_biased` for each view: barlow's unbiased updates `m var n / (n - 1)`,
    read off its state before and after each step, times (n - 1) / n (n: the elements per
    channel)."""
    decay = (1 - BN_MOMENTUM) ** 2  # two updates per step, one per view
    out = {}
    for bn, n in official.bn_elements.items():
        name = f"{bn}.running_var"
        if name not in dump.init:
            continue  # the loss's BatchNorm keeps none in barlow
        before_true = before = np.asarray(dump.init[name], dtype=np.float64)
        for k in range(dump.steps):
            after_true = np.asarray(dump.state(k, name), dtype=np.float64)
            unbiased_part = after_true - decay * before_true  # the views' m var n / (n - 1)
            before = decay * before + unbiased_part * (n - 1) / n
            out[dump.state_key(k, name)] = before.astype(np.float32)
            before_true = after_true
    return out


MUTATIONS = [
    Mutation("one convolution's update dropped", "update", None, lambda d: CONV, changes=drop_conv_update),
    Mutation("one BatchNorm's gradient sign flipped", "grad", None, lambda d: BN, changes=flip_bn_gradient),
    Mutation("lambda off by 10%", "loss", "norm", lambda d: "", lambd_factor=LAMBDA_FACTOR, local=False),
    Mutation("one row of the projector's gradient 1% off", "grad", "row", last_projector_weight,
             changes=projector_row),
    Mutation("one row of the projector's weight 1% off", "param", "row", last_projector_weight,
             changes=projector_weight_row),
    Mutation("one ReLU decision flipped that is no tie", "ties", "norm", lambda d: "relu.0.0",
             changes=flip_relu_decision, local=False),
    Mutation("running variance updated with the biased estimate", "running", None, lambda d: "running_var",
             changes=biased_running_var),
]


def judge(mutation, failures, dump, start):
    """(the failures that name the planted bug as `mutation` says, those that name any other
    tensor at the first step (`start`) where the mutation is local; later steps begin from the
    broken state, so other tensors may follow there)."""
    tensor = mutation.tensor(dump)
    def names(f):  # "step 5 <tensor>", "relu.0.3 (module)"
        return f.name.endswith(tensor) or f.name.startswith(tensor + " ")

    caught = [f for f in failures if f.kind == mutation.kind and names(f) and mutation.measure in (None, f.measure)]
    first = (f"step {start} ", "relu.0.")
    stray = [f for f in failures if mutation.local and not names(f)
             and (f.name == f"step {start}" or f.name.startswith(first))]
    return caught, stray
