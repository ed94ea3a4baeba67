"""A DINO-style student/teacher training loop fed by barlow's multi-crop ring.

The loader decodes each image once and writes DINO's crops (2 global + N local, the official
`DataAugmentationDINO`'s, bit-exact) into the ring; `barlow.torch.RingLoader` yields them as a
list, globals first, normalised on the device. The loop is DINO's (Caron et al., 2021): the
teacher sees the global crops, the student every crop; the loss is the cross-entropy between the
teacher's centred, sharpened softmax and the student's, over every pair of different views; the
teacher follows the student by an exponential moving average, the centre by another.

    loader --dir /data/train --recipe dino --shm dino0 --batch-size 64 --epochs 100 &
    python examples/torch_multicrop.py --shm dino0 --arch resnet18

On the demo data, the CPU and a small network (what the tests run):
    loader --recipe dino --image-size 64 --local-size 32 --local-crops 4 --shm d0 --steps 5 &
    python examples/torch_multicrop.py --shm d0 --arch small --device cpu

One JSON line per step on stdout: step, loss, the crops' shapes, the teacher's distance from its
initial weights; --report FILE writes the last line and the parameters' digest.
"""
import argparse
import copy
import hashlib
import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from barlow.torch import RingLoader


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shm", required=True, help="the ring (loader --recipe dino --shm NAME)")
    ap.add_argument("--arch", default="small", help="small (a 4-layer CNN) or a torchvision model, e.g. resnet18")
    ap.add_argument("--out-dim", type=int, default=4096, help="DINO head's output dimension (default 4096)")
    ap.add_argument("--student-temp", type=float, default=0.1)
    ap.add_argument("--teacher-temp", type=float, default=0.04)
    ap.add_argument("--center-momentum", type=float, default=0.9)
    ap.add_argument("--teacher-momentum", type=float, default=0.996)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--steps", type=int, default=None, help="stop after this many steps")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--report", type=Path, default=None, help="write the last step's line as JSON here")
    return ap.parse_args()


def backbone(arch):
    """The feature extractor (any input size: global average pooling) and its width."""
    if arch == "small":
        layers, width = [], 3
        for out in (32, 64, 128, 256):
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            width = out
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), width
    import torchvision
    net = getattr(torchvision.models, arch)()
    width = net.fc.in_features
    net.fc = nn.Identity()
    return net, width


class DinoHead(nn.Module):
    """DINO's projection head: MLP -> L2 normalisation -> weight-normalised linear layer."""

    def __init__(self, width, out_dim, hidden=512, bottleneck=128):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, bottleneck))
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(bottleneck, out_dim, bias=False))

    def forward(self, x):
        return self.last(F.normalize(self.mlp(x), dim=-1))


class MultiCrop(nn.Module):
    """Runs the backbone once per run of crops of one size (as DINO's MultiCropWrapper), then the
    head on every crop's features."""

    def __init__(self, net, head):
        super().__init__()
        self.net, self.head = net, head

    def forward(self, crops):
        feats, start = [], 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-2:] == crops[start].shape[-2:]:
                end += 1
            feats.append(self.net(torch.cat(crops[start:end])))
            start = end
        return self.head(torch.cat(feats))


def dino_loss(student_out, teacher_out, center, n_crops, student_temp, teacher_temp):
    """Cross-entropy between the teacher's centred, sharpened softmax over the global crops and
    the student's log-softmax over every crop, for every pair of different views."""
    student = (student_out / student_temp).chunk(n_crops)
    teacher = F.softmax((teacher_out - center) / teacher_temp, dim=-1).detach().chunk(2)
    total, terms = 0.0, 0
    for i, q in enumerate(teacher):
        for v, s in enumerate(student):
            if v == i:
                continue
            total = total + torch.sum(-q * F.log_softmax(s, dim=-1), dim=-1).mean()
            terms += 1
    return total / terms


def digest(module):
    h = hashlib.sha256()
    for p in module.state_dict().values():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main():
    args = parse_args()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    net, width = backbone(args.arch)
    student = MultiCrop(net, DinoHead(width, args.out_dim)).to(device)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad = False
    teacher_start = [p.detach().clone() for p in teacher.parameters()]
    center = torch.zeros(1, args.out_dim, device=device)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.04)

    line = None
    with RingLoader(args.shm, device=device, crops=True) as loader:
        if loader.info["views"] < 2:
            sys.exit("examples/torch_multicrop.py: the ring holds one view per image; start the loader with --recipe dino")
        for step, (crops, labels) in enumerate(loader):
            if args.steps is not None and step >= args.steps:
                break
            teacher_out = teacher(crops[:2])
            student_out = student(crops)
            loss = dino_loss(student_out, teacher_out, center, len(crops), args.student_temp, args.teacher_temp)
            if not math.isfinite(loss.item()):
                sys.exit(f"examples/torch_multicrop.py: the loss is {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                for ps, pt in zip(student.parameters(), teacher.parameters()):
                    pt.mul_(args.teacher_momentum).add_(ps.detach(), alpha=1 - args.teacher_momentum)
                batch_center = teacher_out.mean(dim=0, keepdim=True)
                center.mul_(args.center_momentum).add_(batch_center, alpha=1 - args.center_momentum)
                moved = sum((p - p0).norm().item() ** 2 for p, p0 in zip(teacher.parameters(), teacher_start)) ** 0.5
            line = {
                "step": loader.step - 1,
                "loss": loss.item(),
                "crops": [list(c.shape) for c in crops],
                "teacher_moved": moved,
                "center_norm": center.norm().item(),
            }
            print(json.dumps(line), flush=True)
    if line is None:
        sys.exit("examples/torch_multicrop.py: the ring delivered no batch")
    if args.report is not None:
        args.report.write_text(json.dumps({**line, "student": digest(student), "teacher": digest(teacher)}) + "\n")


if __name__ == "__main__":
    main()
