"""Barlow Twins with the official PyTorch recipe, fed by barlow's loader: one GPU or many.

The model, loss, LARS and learning-rate schedule are facebookresearch/barlowtwins main.py's
(`reference/official_bt.py`); the input is barlow's ring, read with `barlow.torch.RingLoader`.
Several GPUs train data-parallel with torch.distributed (DDP, SyncBatchNorm and the all-reduced
cross-correlation, as main.py), one ring per rank: the loader's `--shm bt0,bt1,...` gives ring i
the shard of rank i, and each process takes the ring of its LOCAL_RANK.

One GPU:
    loader --dir /data/train --shm bt0 --batch-size 256 --epochs 100 &
    python examples/torch_bt.py --shm bt0 --epochs 100 --checkpoint-dir runs/r50
Four GPUs on one machine (batch 256 per GPU, 1024 in all):
    loader --dir /data/train --shm bt0,bt1,bt2,bt3 --world-size 4 --batch-size 256 --epochs 100 &
    torchrun --nproc_per_node 4 examples/torch_bt.py --shm bt0,bt1,bt2,bt3 --epochs 100 --checkpoint-dir runs/r50
Resume: add --resume; it prints the loader command that restarts the stream at the checkpoint's
step (start that loader, then this script again).

Each rank prints one JSON line per --print-freq steps on stdout (rank 0 also the loss);
--report FILE writes, per rank, FILE.rank<R>.json with the dataset indices of every step and a
digest of the final parameters (what the tests compare).
"""
import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
from official_bt import BarlowTwins, learning_rate, official_lars, set_learning_rates  # noqa: E402

from barlow.torch import RingLoader  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shm", required=True,
                    help="the ring(s): one name, or a comma-separated list indexed by LOCAL_RANK")
    ap.add_argument("--arch", default="resnet50", help="torchvision model (default resnet50)")
    ap.add_argument("--projector", default="8192-8192-8192", help="projector sizes (default 8192-8192-8192)")
    ap.add_argument("--lambd", type=float, default=0.0051, help="off-diagonal weight (default 0.0051)")
    ap.add_argument("--epochs", type=float, default=None,
                    help="schedule length in epochs (default: the loader's planned steps)")
    ap.add_argument("--warmup-epochs", type=float, default=10, help="warm-up epochs (default 10, main.py's)")
    ap.add_argument("--lr-weights", type=float, default=0.2)
    ap.add_argument("--lr-biases", type=float, default=0.0048)
    ap.add_argument("--weight-decay", type=float, default=1.5e-6)
    ap.add_argument("--steps", type=int, default=None, help="stop after this global step")
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    ap.add_argument("--backend", default=None, help="torch.distributed backend (default nccl on cuda, gloo on cpu)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="autocast dtype of the forward pass (default float32)")
    ap.add_argument("--checkpoint-dir", type=Path, default=None)
    ap.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    ap.add_argument("--resume", action="store_true", help="continue from CHECKPOINT_DIR/checkpoint.pth")
    ap.add_argument("--print-freq", type=int, default=10)
    ap.add_argument("--report", type=Path, default=None, help="write FILE.rank<R>.json at the end")
    ap.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the ring")
    return ap.parse_args()


def param_digest(model):
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main():
    args = parse_args()
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    rings = args.shm.split(",")
    if len(rings) > 1 and local_rank >= len(rings):
        sys.exit(f"torch_bt.py: LOCAL_RANK {local_rank} has no ring in --shm {args.shm} "
                 f"(give one ring per local process)")
    ring = rings[local_rank] if len(rings) > 1 else rings[0]
    use_cuda = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    distributed = world > 1
    if distributed:
        dist.init_process_group(args.backend or ("nccl" if use_cuda else "gloo"))

    loader = RingLoader(ring, device=device, wait=args.wait, channels_last=use_cuda)
    info = loader.info
    if distributed and info["world_size"] != world:
        sys.exit(f"torch_bt.py: the ring {ring} is a shard of world size {info['world_size']} but torchrun "
                 f"started {world} processes; start the loader with --world-size {world}")
    if info["rank"] != rank:
        print(f"torch_bt.py: warning: rank {rank} reads the ring of data rank {info['rank']}", file=sys.stderr)
    batch = info["batch_size"]
    global_batch = batch * world
    steps_per_epoch = info["steps_per_epoch"]
    epochs = args.epochs or max(info["planned_steps"] / steps_per_epoch, 1e-9)

    torch.manual_seed(0)  # the same initial weights everywhere (DDP broadcasts rank 0's anyway)
    model = BarlowTwins(args.arch, args.projector, args.lambd, batch_size=global_batch,
                        all_reduce=dist.all_reduce if distributed else None)
    if distributed and use_cuda:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if use_cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = official_lars(model, weight_decay=args.weight_decay)
    step = info["first_step"] + loader.ring.position
    ckpt_path = args.checkpoint_dir / "checkpoint.pth" if args.checkpoint_dir else None
    if args.resume and ckpt_path and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step = ckpt["step"]
        print(f"torch_bt.py: rank {rank} resumes at step {step}; its loader must run as\n  "
              f"{loader.loader_command(step)}", file=sys.stderr)
        loader.load_state_dict({"step": step, "seed": ckpt["seed"]})
    params_at_start = param_digest(model) if args.report else None
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if use_cuda else None) \
        if distributed else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")

    seen, started = [], time.perf_counter()
    batches = iter(loader)
    while args.steps is None or step < args.steps:
        wait_t = time.perf_counter()
        try:
            x_a, x_b, _labels = next(batches)
        except StopIteration:
            break
        waited = time.perf_counter() - wait_t
        lr = learning_rate(step, global_batch, steps_per_epoch, epochs, args.warmup_epochs)
        set_learning_rates(optimizer, lr, args.lr_weights, args.lr_biases)
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = ddp(x_a, x_b)
        loss.backward()
        optimizer.step()
        seen.append({"step": step, "indices": loader.indices.tolist()})
        step += 1
        if step % args.print_freq == 0:
            print(json.dumps({"rank": rank, "step": step, "loss": round(loss.item(), 4), "lr": lr,
                              "wait_ms": round(waited * 1e3, 2),
                              "time_s": round(time.perf_counter() - started, 2)}), flush=True)
        if ckpt_path and rank == 0 and step % args.checkpoint_every == 0:
            save(ckpt_path, model, optimizer, step, info["seed"])
    if ckpt_path and rank == 0:
        save(ckpt_path, model, optimizer, step, info["seed"])
    stats = loader.stats()
    print(f"torch_bt.py: rank {rank} done at step {step}; {stats['verdict']}: {stats['advice']}", file=sys.stderr)
    if args.report:
        report = {"rank": rank, "world_size": world, "step": step, "steps": seen,
                  "params_at_start": params_at_start, "params": param_digest(model)}
        Path(f"{args.report}.rank{rank}.json").write_text(json.dumps(report))
    loader.close()
    if distributed:
        dist.destroy_process_group()


def save(path, model, optimizer, step, seed):
    """The model, LARS state and the global step to resume from (with the loader's seed);
    atomic: written beside, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "step": step, "seed": seed}, tmp)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
