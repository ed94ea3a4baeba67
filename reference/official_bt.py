"""The pieces of facebookresearch/barlowtwins main.py that barlow's PyTorch references share:
the official LARS optimizer, the projector and the Barlow Twins loss. Imported by
`reference/torch_knn.py` (the k-NN check) and `scripts/gpu/torch_bt.py` (GPU timing)."""
import torch
from torch import nn


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


def projector(sizes):
    """Linear (no bias), BatchNorm1d, ReLU between the layers of `sizes`; a last Linear (no bias)."""
    layers = []
    for i in range(len(sizes) - 2):
        layers += [nn.Linear(sizes[i], sizes[i + 1], bias=False), nn.BatchNorm1d(sizes[i + 1]), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(sizes[-2], sizes[-1], bias=False))
    return nn.Sequential(*layers)


def barlow_twins_loss(bn, z1, z2, lambd):
    """C = bn(z1)^T bn(z2) / N; returns (loss, on-diagonal term, off-diagonal sum of squares) with
    loss = sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2. `bn` is BatchNorm1d(affine=False)."""
    c = bn(z1).T @ bn(z2)
    c = c / z1.shape[0]
    on_diag = torch.diagonal(c).add(-1).pow(2).sum()
    off = c.flatten()[:-1].view(c.shape[0] - 1, c.shape[0] + 1)[:, 1:].flatten()
    off_diag = off.pow(2).sum()
    return on_diag + lambd * off_diag, on_diag, off_diag
