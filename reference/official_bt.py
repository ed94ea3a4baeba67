"""The pieces of facebookresearch/barlowtwins main.py that barlow's PyTorch references share:
the official LARS optimizer and its parameter groups, the learning-rate schedule, the projector,
the Barlow Twins loss and the ResNet model. Imported by `reference/torch_knn.py` (the k-NN check),
`reference/step_check.py` (one training step against barlow's), `scripts/gpu/torch_bt.py` (GPU
timing), `examples/torch_bt.py` (training from barlow's ring, one GPU or many) and
`scripts/gpu/torch_feed.py` (the official input pipeline against the ring)."""
import math
import random

import torch
from PIL import ImageFilter, ImageOps
from torch import nn

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


class LARS(torch.optim.Optimizer):
    """The official LARS. With both filters on (as the paper trains), weight decay and the
    trust-ratio adaptation apply to weights (ndim > 1) only, not to biases and BatchNorm."""

    def __init__(self, params, lr, weight_decay=0, momentum=0.9, eta=0.001,
                 weight_decay_filter=False, lars_adaptation_filter=False):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta,
                        weight_decay_filter=weight_decay_filter,
                        lars_adaptation_filter=lars_adaptation_filter)
        super().__init__(params, defaults)

    @staticmethod
    def exclude_bias_and_norm(p):
        return p.ndim == 1

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g["params"]:
                dp = p.grad
                if dp is None:
                    continue
                if not g["weight_decay_filter"] or not self.exclude_bias_and_norm(p):
                    dp = dp.add(p, alpha=g["weight_decay"])
                if not g["lars_adaptation_filter"] or not self.exclude_bias_and_norm(p):
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.0,
                                    torch.where(update_norm > 0, (g["eta"] * param_norm / update_norm), one), one)
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(g["momentum"]).add_(dp)
                p.add_(mu, alpha=-g["lr"])


def official_lars(model, weight_decay=1.5e-6):
    """LARS over `model`'s parameters as main.py builds it: group 0 the weights (ndim != 1), group
    1 the biases and BatchNorm parameters, both filters on, lr set per step by
    `set_learning_rates`."""
    weights = [p for p in model.parameters() if p.ndim != 1]
    biases = [p for p in model.parameters() if p.ndim == 1]
    return LARS([{"params": weights}, {"params": biases}], lr=0, weight_decay=weight_decay,
                weight_decay_filter=True, lars_adaptation_filter=True)


def learning_rate(step, batch_size, steps_per_epoch, epochs, warmup_epochs=10):
    """main.py's adjust_learning_rate before the group factors: linear warm-up over
    `warmup_epochs` (10 in main.py) from 0, then cosine decay to 0.001x, times batch_size / 256."""
    max_steps = epochs * steps_per_epoch
    warmup_steps = warmup_epochs * steps_per_epoch
    base_lr = batch_size / 256
    if step < warmup_steps:
        lr = base_lr * step / warmup_steps
    else:
        step -= warmup_steps
        max_steps -= warmup_steps
        q = 0.5 * (1 + math.cos(math.pi * step / max_steps))
        end_lr = base_lr * 0.001
        lr = base_lr * q + end_lr * (1 - q)
    return lr


def set_learning_rates(optimizer, lr, lr_weights, lr_biases):
    """The end of adjust_learning_rate: group 0 gets lr * lr_weights, group 1 lr * lr_biases."""
    optimizer.param_groups[0]["lr"] = lr * lr_weights
    optimizer.param_groups[1]["lr"] = lr * lr_biases


def projector(sizes):
    """Linear (no bias), BatchNorm1d, ReLU between the layers of `sizes`; a last Linear (no bias)."""
    layers = []
    for i in range(len(sizes) - 2):
        layers += [nn.Linear(sizes[i], sizes[i + 1], bias=False), nn.BatchNorm1d(sizes[i + 1]), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
    return nn.Sequential(*layers)


def barlow_twins_loss(bn, z1, z2, lambd, batch_size=None, all_reduce=None):
    """C = bn(z1)^T bn(z2) / N; returns (loss, on-diagonal term, off-diagonal sum of squares) with
    loss = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2. `bn` is BatchNorm1d(affine=False).
    Data-parallel, as main.py: N is the global `batch_size` and `all_reduce` (torch.distributed's)
    sums C over the ranks in place, outside autograd."""
    c = bn(z1).T @ bn(z2)
    c = c / (batch_size or z1.shape[0])
    if all_reduce is not None:
        all_reduce(c)
    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
    off = c.flatten()[:-1].view(c.shape[0] - 1, c.shape[0] + 1)[:, 1:].flatten()
    off_diag = off.pow(2).sum()
    return on_diag + lambd * off_diag, on_diag, off_diag


class BarlowTwins(nn.Module):
    """main.py's model: torchvision `arch` (zero_init_residual=True, fc removed), the projector
    from the backbone width through `sizes` ("8192-8192-8192"), BatchNorm1d(affine=False) `bn`;
    forward(y1, y2) returns the loss. Data-parallel (main.py under DDP): pass the global
    `batch_size` and `all_reduce=torch.distributed.all_reduce`."""

    def __init__(self, arch, sizes, lambd=0.0051, batch_size=None, all_reduce=None):
        import torchvision
        super().__init__()
        self.lambd = lambd
        self.batch_size, self.all_reduce = batch_size, all_reduce
        self.backbone = getattr(torchvision.models, arch)(zero_init_residual=True)
        feat = self.backbone.fc.in_features
        self.backbone.fc = nn.Identity()
        sizes = [feat] + [int(s) for s in sizes.split("-")]
        self.projector = projector(sizes)
        self.bn = nn.BatchNorm1d(sizes[-1], affine=False)

    def forward(self, y1, y2):
        z1 = self.projector(self.backbone(y1))
        z2 = self.projector(self.backbone(y2))
        return barlow_twins_loss(self.bn, z1, z2, self.lambd, self.batch_size, self.all_reduce)[0]


class GaussianBlur:
    """Official: sigma = U(0.1, 2.0) in output pixels. `scale` multiplies sigma (1.0 = official)."""

    def __init__(self, p, scale=1.0):
        self.p, self.scale = p, scale

    def __call__(self, img):
        if random.random() < self.p:
            sigma = (random.random() * 1.9 + 0.1) * self.scale
            return img.filter(ImageFilter.GaussianBlur(sigma))
        return img


class Solarization:
    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        if random.random() < self.p:
            return ImageOps.solarize(img)
        return img


def official_transform(size=224):
    """main.py's Transform: PIL image -> (y1, y2), the two views (`transform`: blur always,
    no solarization; `transform_prime`: blur p=0.1, solarization p=0.2), normalised tensors."""
    import torchvision.transforms as T

    def view(blur_p, sol_p):
        return T.Compose([
            T.RandomResizedCrop(size, interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(p=0.5),
            T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            GaussianBlur(blur_p),
            Solarization(sol_p),
            T.ToTensor(),
            T.Normalize(mean=MEAN, std=STD),
        ])

    t1, t2 = view(1.0, 0.0), view(0.1, 0.2)
    return lambda img: (t1(img), t2(img))
