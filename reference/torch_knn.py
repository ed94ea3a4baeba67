#!/usr/bin/env python3
"""Independent PyTorch reference of the trainer's demo experiment: Barlow Twins pretraining of
the "tiny" backbone + "128-128" projector with the official LARS / learning-rate schedule and
the official view pipeline at a small output size, then leave-one-out k-NN on backbone features.

Follows facebookresearch/barlowtwins main.py (Transform, GaussianBlur, Solarization, LARS,
adjust_learning_rate, BarlowTwins loss) with these changes: output size --size (default 64),
warm-up --warmup-epochs (official: 10), a tiny conv backbone instead of ResNet-50, one process.

k-NN: every image -> Resize(int(size/0.875)) bilinear + CenterCrop(size) + Normalize; backbone
features, L2-normalised; leave-one-out, k=20, cosine similarity, votes weighted exp(sim/0.07).
Reported with BN in eval mode (running stats) and in train mode (batch stats over batches of
100 images, both in folder order -- i.e. class-sorted, as the Rust `embed_set` does -- and in a
fixed random order, which does not leak labels through the batch statistics).

  python3 -m venv /tmp/torch-venv && /tmp/torch-venv/bin/pip install torch torchvision
  /tmp/torch-venv/bin/python reference/torch_knn.py --data /tmp/demo-v2 --epochs 0 --seed 0
  /tmp/torch-venv/bin/python reference/torch_knn.py --data /tmp/demo-v2 --epochs 60 --out run.json
  /tmp/torch-venv/bin/python reference/torch_knn.py --data /tmp/demo-v2 --eval run/checkpoint.safetensors
"""
import argparse
import json
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image

from official_bt import (MEAN, STD, GaussianBlur, Solarization, barlow_twins_loss,  # same folder
                         learning_rate, official_lars, projector, set_learning_rates)
from safetensors_np import read_safetensors


# ---------------------------------------------------------------- data
def scan(root):
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    items = []
    for label, c in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(root, c))):
            items.append((os.path.join(root, c, f), label))
    return classes, items


def load_images(items):
    imgs = []
    for path, _ in items:
        with open(path, "rb") as fh:
            img = Image.open(fh)
            imgs.append(img.convert("RGB"))
    return imgs


def make_transform(size, variant, blur_scale):
    def view(blur_p, sol_p):
        ops = [
            T.RandomResizedCrop(size, interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(p=0.5),
        ]
        if variant == "official":
            ops += [
                T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                GaussianBlur(blur_p, blur_scale),
                Solarization(sol_p),
            ]
        elif variant == "noblur":
            ops += [
                T.RandomApply([T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
                T.RandomGrayscale(p=0.2),
                Solarization(sol_p),
            ]
        elif variant != "cropflip":
            raise ValueError(variant)
        ops += [T.ToTensor(), T.Normalize(MEAN, STD)]
        return T.Compose(ops)

    t1, t2 = view(1.0, 0.0), view(0.1, 0.2)
    return lambda img: (t1(img), t2(img))


class PairDataset(torch.utils.data.Dataset):
    def __init__(self, imgs, transform):
        self.imgs, self.transform = imgs, transform

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        return self.transform(self.imgs[i])


# ---------------------------------------------------------------- model
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        layers = []
        for cin, cout, stride in [(3, 16, 2), (16, 32, 2), (32, 64, 2), (64, 64, 1)]:
            layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        for m in self.modules():  # torchvision ResNet init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.body(x).mean(dim=(2, 3))


class BarlowTwins(nn.Module):
    def __init__(self, sizes=(64, 128, 128), lambd=0.0051):
        super().__init__()
        self.backbone = Tiny()
        self.projector = projector(sizes)
        self.bn = nn.BatchNorm1d(sizes[-1], affine=False)
        self.lambd = lambd

    def forward(self, y1, y2):
        z1 = self.projector(self.backbone(y1))
        z2 = self.projector(self.backbone(y2))
        loss, on_diag, off_diag = barlow_twins_loss(self.bn, z1, z2, self.lambd)
        return loss, on_diag.item(), off_diag.item()


def load_backbone(path):
    """A Tiny with the backbone of `path`: a barlow `tiny` checkpoint (`.safetensors`, official
    names `backbone.conv<i>.weight`, `backbone.bn<i>.*`) or a `--save`d state_dict."""
    net = Tiny()
    if str(path).endswith(".safetensors"):
        tensors, _ = read_safetensors(path)
        sd = {}
        for name, t in tensors.items():
            top, layer, field = (name.split(".") + ["", ""])[:3]
            if top == "backbone":  # conv<i> -> body.<3(i-1)>, bn<i> -> body.<3(i-1)+1>
                i = 3 * (int(layer.lstrip("convbn")) - 1) + (layer.startswith("bn"))
                sd[f"body.{i}.{field}"] = torch.from_numpy(np.array(t))
    else:
        sd = torch.load(path)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"torch_knn: {path}: missing {missing}, unexpected {unexpected}")
    return net


# ---------------------------------------------------------------- schedule (official)
def adjust_learning_rate(args, optimizer, steps_per_epoch, step):
    lr = learning_rate(step, args.batch_size, steps_per_epoch, args.epochs, args.warmup_epochs)
    set_learning_rates(optimizer, lr, args.lr_weights, args.lr_biases)
    return lr


# ---------------------------------------------------------------- k-NN
def eval_tensor(imgs, size):
    t = T.Compose([
        T.Resize(int(size / 0.875), interpolation=T.InterpolationMode.BILINEAR),
        T.CenterCrop(size), T.ToTensor(), T.Normalize(MEAN, STD),
    ])
    return torch.stack([t(im) for im in imgs])


@torch.no_grad()
def embed(backbone, x, train_bn, batch=100, order=None):
    was = backbone.training
    n = x.shape[0]
    order = torch.arange(n) if order is None else order
    feats = torch.empty(n, 64)
    if train_bn:
        # batch statistics without touching the running statistics
        saved = {k: v.clone() for k, v in backbone.state_dict().items()}
        backbone.train()
    else:
        backbone.eval()
    for s in range(0, n, batch):
        idx = order[s:s + batch]
        feats[idx] = backbone(x[idx])
    if train_bn:
        backbone.load_state_dict(saved)
    backbone.train(was)
    return F.normalize(feats, dim=1)


def knn_top1(feats, labels, k=20, t=0.07, classes=None):
    classes = int(labels.max()) + 1 if classes is None else classes
    sim = feats @ feats.T
    sim.fill_diagonal_(-float("inf"))
    top, idx = sim.topk(k, dim=1)
    votes = torch.zeros(feats.shape[0], classes, dtype=torch.float64)
    votes.scatter_add_(1, labels[idx], (top.double() / t).exp())
    return (votes.argmax(1) == labels).double().mean().item()


def knn_all(backbone, x, labels, seed=1234):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(x.shape[0], generator=g)
    return {
        "eval_bn": knn_top1(embed(backbone, x, False), labels),
        "train_bn_sorted": knn_top1(embed(backbone, x, True), labels),
        "train_bn_shuffled": knn_top1(embed(backbone, x, True, order=perm), labels),
    }


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/tmp/demo-v2")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr-weights", type=float, default=5.0)
    ap.add_argument("--lr-biases", type=float, default=0.05)
    ap.add_argument("--weight-decay", type=float, default=1.5e-6)
    ap.add_argument("--lambd", type=float, default=0.0051)
    ap.add_argument("--warmup-epochs", type=int, default=5)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--aug", default="official", choices=["official", "noblur", "cropflip"],
                    help="official: paper views; noblur: no GaussianBlur; cropflip: crop+flip only")
    ap.add_argument("--blur-scale", type=float, default=1.0, help="multiply the blur sigma (official 1.0)")
    ap.add_argument("--knn-every", type=int, default=0, help="also k-NN (eval BN) every N epochs")
    ap.add_argument("--out", default=None, help="write a JSON summary here")
    ap.add_argument("--save", default=None, help="save the trained backbone's state_dict here (torch.save)")
    ap.add_argument("--eval", nargs="+", metavar="CHECKPOINT",
                    help="no training: the k-NN of each checkpoint (barlow `tiny` .safetensors or a --save file), "
                         "one JSON line each")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)

    t0 = time.time()
    classes, items = scan(args.data)
    imgs = load_images(items)
    labels = torch.tensor([l for _, l in items])
    x_eval = eval_tensor(imgs, args.size)
    print(f"{len(imgs)} images, {len(classes)} classes, decoded in {time.time() - t0:.1f}s", flush=True)

    if args.eval:
        for path in args.eval:
            print(json.dumps({"checkpoint": path, **knn_all(load_backbone(path), x_eval, labels)}), flush=True)
        return

    model = BarlowTwins(lambd=args.lambd)
    result = {"args": vars(args), "torch": torch.__version__}
    result["knn_init"] = knn_all(model.backbone, x_eval, labels)
    print(f"init k-NN: {json.dumps(result['knn_init'])}", flush=True)
    if args.epochs <= 0:
        if args.save:
            torch.save(model.backbone.state_dict(), args.save)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(result, fh, indent=1)
        return

    ds = PairDataset(imgs, make_transform(args.size, args.aug, args.blur_scale))
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True,
                                         num_workers=args.workers)
    opt = official_lars(model, args.weight_decay)
    spe = len(loader)
    losses, history = [], []
    step = 0
    t_train = time.time()
    model.train()
    for epoch in range(args.epochs):
        for y1, y2 in loader:
            lr = adjust_learning_rate(args, opt, spe, step)
            opt.zero_grad()
            loss, on, off = model(y1, y2)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if step % 50 == 0:
                print(f"ep {epoch:3d} step {step:5d} lr {lr * args.lr_weights:.4f} loss {loss.item():8.3f} "
                      f"(on {on:.3f} off {off:.2f}) {time.time() - t_train:6.1f}s", flush=True)
            step += 1
        if args.knn_every and (epoch + 1) % args.knn_every == 0 and epoch + 1 < args.epochs:
            k = knn_top1(embed(model.backbone, x_eval, False), labels)
            kt = knn_top1(embed(model.backbone, x_eval, True, order=torch.randperm(len(imgs))), labels)
            mean_loss = float(np.mean(losses[-spe:]))
            history.append({"epoch": epoch + 1, "loss": mean_loss, "knn_eval_bn": k, "knn_train_bn_shuffled": kt})
            print(f"  epoch {epoch + 1}: mean loss {mean_loss:.3f}  k-NN eval-BN {k:.3f}  train-BN {kt:.3f}",
                  flush=True)
            model.train()
    train_s = time.time() - t_train
    result.update({
        "steps": step, "steps_per_epoch": spe, "train_seconds": round(train_s, 1),
        "loss_first": losses[0], "loss_first_epoch_mean": float(np.mean(losses[:spe])),
        "loss_last_epoch_mean": float(np.mean(losses[-spe:])), "loss_last": losses[-1],
        "history": history,
    })
    result["knn_trained"] = knn_all(model.backbone, x_eval, labels)
    print(f"trained {args.epochs} epochs / {step} steps in {train_s / 60:.1f} min; "
          f"loss {losses[0]:.2f} -> {result['loss_last_epoch_mean']:.2f} (last-epoch mean)", flush=True)
    print(f"trained k-NN: {json.dumps(result['knn_trained'])}", flush=True)
    if args.save:
        torch.save(model.backbone.state_dict(), args.save)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
