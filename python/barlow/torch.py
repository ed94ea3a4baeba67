"""PyTorch's side of the ring: `RingLoader` yields `(x_a, x_b, labels)` tensors on a device
(two-view recipes: Barlow Twins, MoCo v3), or `(crops, labels)`, the list of every view, globals
first (multi-crop recipes: DINO).

The pixels cross as uint8: each batch is copied once from the ring slot into a (pinned, on
CUDA) buffer, the slot goes back to the loader at once, the buffer moves to the device with
`non_blocking=True` on a side stream, and the device converts and normalises it with the
header's mean and std: `(u8 / 255 - mean) / std`. A background thread does this for the next
batches (`prefetch` of them) while the model computes on the current one.

    from barlow.torch import RingLoader
    loader = RingLoader("bt0", device="cuda")       # loader --shm bt0 ... runs elsewhere
    for x_a, x_b, labels in loader:
        loss = model(x_a, x_b)
        ...
    print(loader.stats()["verdict"])               # input-bound? (the loader's own verdict)

    loader = RingLoader("dino0", device="cuda")     # loader --recipe dino --shm dino0 ...
    for crops, labels in loader:                    # 2 x [B, 3, 224, 224], then 8 x [B, 3, 96, 96]
        teacher_out = teacher(crops[:2]); student_out = student(crops)

Leaving early (`break`, an exception, Ctrl-C, `del loader`, the end of the script) stops the
thread and detaches from the ring; `close()` or `with RingLoader(...) as loader:` does it at once.
"""
import atexit
import queue
import threading
import weakref

import numpy as np
import torch

from . import Ring, RingError

__all__ = ["RingLoader"]

_END = object()

# Loaders not closed yet: closed before the interpreter finalises, where a thread still inside a
# torch op would be killed on taking the GIL back (std::terminate: SIGABRT, exit code 134).
_open = weakref.WeakSet()


@atexit.register
def _close_open_loaders():
    for loader in list(_open):
        loader.close()


class RingLoader:
    """Normalised views from the barlow ring `name` (a name in /dev/shm, an absolute path, or an
    open `barlow.Ring`) on `device`: `(x_a, x_b, labels)` when the ring's recipe makes two views
    of one size, else `(crops, labels)` with `crops` the list of every view `[B, C, H, W]` in the
    recipe's order (the global views first, then the local ones: what DINO's and SwAV's training
    loops expect).

    - `crops`: True yields `(crops, labels)` for any ring (two-view ones too); False insists on
      `(x_a, x_b, labels)` (refused for other rings); None (default) picks by the ring.
    - `dtype`: float32 (default), bfloat16 or float16; the normalisation is computed in float32
      and the result cast.
    - `channels_last`: the views in `torch.channels_last` memory format.
    - `prefetch`: batches made ready ahead while the caller computes (default 2).
    - `wait`: seconds to wait for the ring to appear (as `trainer --wait`).

    `indices` holds the dataset indices (numpy int64) of the batch yielded last.
    `len()` is the number of batches the ring's loader plans to deliver (its `--steps` or
    `--epochs`, from the ring's first step); `step` is the global step of the next batch;
    `state_dict()` holds it with the loader command that resumes the stream there;
    `load_state_dict()` checks that the ring continues from that step. `stats()` is
    `barlow.Ring.stats()`: rates, waits and whether training is input-bound.
    `close()` (or leaving a `with` block, dropping the loader, the interpreter's exit) stops the
    prefetching thread and detaches from the ring.
    """

    def __init__(self, name, device="cuda", dtype=torch.float32, channels_last=False,
                 prefetch=2, wait=30.0, allow_foreign_ring=False, crops=None):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be torch.float32, torch.bfloat16 or torch.float16, not {dtype}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be 1 or more, not {prefetch}")
        self.ring = name if isinstance(name, Ring) else Ring(name, wait=wait,
                                                              allow_foreign_ring=allow_foreign_ring)
        self.name = self.ring.name
        self.info = self.ring.info
        groups = self.info["groups"]
        pair = len(groups) == 1 and groups[0]["views"] == 2
        if crops is False and not pair:
            shape = " + ".join(f"{g['views']}x{g['height']}x{g['width']}" for g in groups)
            self.ring.close()
            raise ValueError(
                f"the ring {self.name} holds the {self.info['recipe'] or 'unnamed'} recipe's views ({shape}), "
                "not two views of one size: use crops=True (or None) to get the list of crops")
        self.crops = not pair if crops is None else bool(crops)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.dtype, self.channels_last, self.prefetch = dtype, channels_last, prefetch
        self.step = self.info["first_step"] + self.ring.position
        self.indices = None
        self._done = False
        self._prefetcher = _Prefetcher(self.ring, self.device, dtype, channels_last, prefetch)
        _open.add(self)

    # -- what a training loop uses ------------------------------------------------------------

    def __len__(self):
        planned = self.info["planned_steps"]
        if planned == 0:
            raise TypeError("the ring's loader has no planned end (no --steps or --epochs), so no len()")
        return planned - self.info["first_step"]

    @property
    def planned_steps(self):
        """The global step the loader's stream ends at (its --steps, or epochs x steps per epoch)."""
        return self.info["planned_steps"]

    def __iter__(self):
        if not self._done:
            self._prefetcher.start()
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        item = self._prefetcher.get()
        if item is _END:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        step, views, labels, indices, ready = item
        if ready is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(ready)
            for t in views + [labels]:
                t.record_stream(current)
        self.step = step + 1
        self.indices = indices
        if self.crops:
            return views, labels
        return views[0], views[1], labels

    def state_dict(self):
        """Where to resume: the global step of the next batch (`step`), the epoch it falls in,
        what the stream is made of, and `loader_command`, the loader options that restart the
        ring's stream exactly there (as `trainer --resume` prints them)."""
        i = self.info
        return {
            "step": self.step,
            "epoch": self.step // i["steps_per_epoch"] if i["steps_per_epoch"] else 0,
            "seed": i["seed"],
            "batch_size": i["batch_size"],
            "image_size": [i["height"], i["width"]],
            "recipe": i["recipe"],
            "views": [[g["views"], g["height"], g["width"]] for g in i["groups"]],
            "rank": i["rank"],
            "world_size": i["world_size"],
            "loader_command": self.loader_command(self.step),
        }

    def loader_command(self, step):
        """The loader options that make this ring's stream start at global step `step`."""
        i = self.info
        cmd = (f"loader --shm {self.name} --seed {i['seed']} --batch-size {i['batch_size']} "
               f"--image-size {i['height']} --start-step {step}")
        if i["recipe"] not in ("", "barlow-twins"):
            cmd += f" --recipe {i['recipe']}"
        groups = i["groups"]
        if len(groups) > 1:
            cmd += f" --local-size {groups[1]['height']} --local-crops {sum(g['views'] for g in groups[1:])}"
        if i["world_size"] > 1:
            cmd += f" --rank {i['rank']} --world-size {i['world_size']}"
        if i["planned_steps"]:
            cmd += f" --steps {i['planned_steps']}"
        return cmd + " [your other options: --dir or --pack, --workers, ...]"

    def load_state_dict(self, state):
        """Checks that the ring continues where `state` (from `state_dict()`; only "step" is
        required) left off; raises `RingError` with the loader command to run if it does not."""
        want = int(state["step"])
        have = self.info["first_step"] + self.ring.position
        for key in ("seed", "batch_size", "world_size", "recipe"):
            if key in state and state[key] != self.info[key]:
                raise RingError(
                    f"the ring's {key} is {self.info[key]} but the checkpoint's stream had {state[key]}; "
                    f"restart the loader as the checkpoint's stream was made")
        if have != want:
            raise RingError(
                f"the ring {self.name} starts at global step {have} but the checkpoint resumes at step {want}; "
                f"restart the loader with: {self.loader_command(want)}")
        self.step = want

    def stats(self):
        """`barlow.Ring.stats()` of the ring: rates, waits, the verdict (input-bound?)."""
        return self.ring.stats()

    def close(self):
        """Stops and joins the prefetching thread and detaches from the ring, so that its loader
        sees this reader leave and a new reader may attach (continuing after the batches taken,
        prefetched ones included; see `state_dict`). Idempotent."""
        self._done = True
        if self._prefetcher.close():
            _open.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if "_prefetcher" in self.__dict__:  # __init__ got that far
            self.close()


class _Prefetcher:
    """A `RingLoader`'s thread: takes the ring's batches, copies each into a staging buffer
    (releasing the slot), normalises it on the device and queues it, `prefetch` ahead. It holds
    no reference to the `RingLoader`, so dropping the loader closes it."""

    def __init__(self, ring, device, dtype, channels_last, prefetch):
        self.ring, self.device, self.dtype, self.channels_last = ring, device, dtype, channels_last
        info = ring.info
        b, c = info["batch_size"], info["channels"]
        self._groups = info["groups"]
        mean = torch.tensor(info["mean"], dtype=torch.float32).view(1, 1, c, 1, 1)
        std = torch.tensor(info["std"], dtype=torch.float32).view(1, 1, c, 1, 1)
        # (u8 / 255 - mean) / std  ==  u8 * scale + shift
        self._scale = (1.0 / (255.0 * std)).to(device)
        self._shift = (-mean / std).to(device)
        self._cuda = device.type == "cuda"
        # Reusable uint8 staging buffers, one [V_g, B, C, H_g, W_g] per view group: pinned for
        # the copy to a GPU, with the event after which each set may be overwritten.
        n_buffers = prefetch + 2 if self._cuda else 1
        self._buffers = [[torch.empty((g["views"], b, c, g["height"], g["width"]), dtype=torch.uint8,
                                      pin_memory=self._cuda) for g in self._groups]
                         for _ in range(n_buffers)]
        self._buffer_free = [None] * n_buffers
        self._stream = torch.cuda.Stream(device) if self._cuda else None
        self._queue = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._work, name="barlow-ring-loader", daemon=True)
            self._thread.start()

    def get(self):
        """The next item: a converted batch, `_END` or the exception the thread met."""
        self.start()
        while True:
            try:
                return self._queue.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RingError("the ring loader's thread stopped without a word (closed?)")

    def close(self):
        """Stops the thread (closing the ring wakes a waiting take), joins it and drops what it
        made ahead. False if already closed."""
        if self._stop.is_set():
            return False
        self._stop.set()
        self.ring.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        while not self._queue.empty():
            self._queue.get_nowait()
        return True

    def _work(self):
        slot = 0
        try:
            while not self._stop.is_set():
                try:
                    batch = self.ring.next(timeout=0.25)
                except TimeoutError:
                    continue
                if batch is None:
                    self._put(_END)
                    return
                item = self._convert(batch, slot)
                slot = (slot + 1) % len(self._buffers)
                if not self._put(item):
                    return
        except BaseException as e:  # handed to the training loop, raised there
            self._put(e)

    def _put(self, item):
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.25)
                return True
            except queue.Full:
                pass
        return False

    def _convert(self, batch, slot):
        """Copies the batch into staging buffer set `slot`, releases the ring slot, and makes the
        normalised tensors on the device (asynchronously on CUDA)."""
        n = batch.count
        bufs = self._buffers[slot]
        if self._buffer_free[slot] is not None:
            self._buffer_free[slot].synchronize()  # its last copy to the GPU is done
        for buf, group in zip(bufs, batch.groups):
            np.copyto(buf.numpy()[:, :n], group)
        labels = torch.from_numpy(batch.labels)
        step, indices = batch.step, batch.indices
        batch.release()
        groups = [buf[:, :n] for buf in bufs]
        if not self._cuda:
            return step, self._normalise(groups), labels, indices, None
        with torch.cuda.stream(self._stream):
            groups = [g.to(self.device, non_blocking=True) for g in groups]
            copied = torch.cuda.Event()
            copied.record(self._stream)
            self._buffer_free[slot] = copied
            views = self._normalise(groups)
            labels = labels.to(self.device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self._stream)
        return step, views, labels, indices, ready

    def _normalise(self, groups):
        """uint8 [V_g, n, C, H_g, W_g] per group -> every view, dtype [n, C, H, W]:
        (u8 / 255 - mean) / std per channel, computed in float32."""
        views = []
        for pixels in groups:
            x = torch.addcmul(self._shift, pixels.to(torch.float32), self._scale)
            if self.dtype != torch.float32:
                x = x.to(self.dtype)
            for v in x:
                if self.channels_last:
                    v = v.contiguous(memory_format=torch.channels_last)
                views.append(v)
        return views
