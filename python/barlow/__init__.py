"""Read barlow's shared-memory ring from Python.

barlow's `loader` decodes JPEGs and writes each image's augmented views (its recipe's: Barlow
Twins' two, DINO's 2 global + 8 local, ...) into a ring in /dev/shm; `barlow.Ring` attaches to it
as its one reader (the same rules, checks and error messages as `trainer --shm`, from the same
Rust code) and yields the batches in order, as zero-copy numpy views of the ring's memory::

    import barlow
    with barlow.Ring("bt0") as ring:          # loader --shm bt0 ... runs elsewhere
        for batch in ring:
            a, b = batch.view_a, batch.view_b  # uint8 [B, C, H, W], views of the slot
            crops = batch.views                # every view, in the recipe's order
            ...                                # the slot is the loader's again at the next batch

`barlow.torch.RingLoader` turns that into normalised tensors on a device for PyTorch.
"""
import numpy as np

from ._barlow import ConsumerInUse, LoaderDied, RingError
from ._barlow import Ring as _NativeRing

__all__ = ["Ring", "Batch", "RingError", "LoaderDied", "ConsumerInUse"]


class _SlotMemory:
    """The base object of a zero-copy array: describes the slot's memory to numpy
    (`__array_interface__`) and keeps the ring mapped while the array lives."""

    __slots__ = ("__array_interface__", "_mapped")

    def __init__(self, address, shape, mapped):
        self.__array_interface__ = {
            "version": 3,
            "shape": shape,
            "typestr": "|u1",
            "data": (address, True),  # read-only: the slot belongs to the ring
        }
        self._mapped = mapped


class Batch:
    """One batch of samples' views, in place in a ring slot.

    `views` is the list of every view, in the recipe's order (globals first): read-only numpy
    `uint8` arrays `[count, C, H, W]` (H and W those of the view's group) that point into the
    slot; `groups` the same memory by group, `[views_in_group, count, C, H, W]` each;
    `view_a` and `view_b` are views 0 and 1 (Barlow Twins' pair). `labels` and `indices`
    (int64, the class index of the folder's sorted class names and the dataset index) are copies;
    `epoch` and `step` (the global step) say where in the stream it is. The slot goes back to the
    loader on `release()` or when the ring's next batch is taken; after that the arrays' properties
    raise `RingError` instead of showing reused memory. An array you took from it before is still
    a view of that slot: copy what you keep (`np.array(batch.view_a)`, or
    `barlow.torch.RingLoader`, which does it for you).
    """

    __slots__ = ("_ring", "_token", "position", "epoch", "step", "count", "labels", "indices",
                 "_views", "_groups")

    def __init__(self, ring, token, taken, groups, channels, batch_size, mapped):
        position, epoch, step, count, labels, indices, addresses = taken
        self._ring, self._token = ring, token
        self.position, self.epoch, self.step, self.count = position, epoch, step, count
        self.labels = np.array(labels, dtype=np.int64)
        self.indices = np.array(indices, dtype=np.int64)
        self._views, self._groups = [], []
        first = 0
        for g in groups:
            shape = (channels, g["height"], g["width"])
            full = (g["views"], batch_size) + shape
            group = np.asarray(_SlotMemory(addresses[first], full, mapped))[:, :count]
            self._groups.append(group)
            self._views.extend(group[k] for k in range(g["views"]))
            first += g["views"]

    @property
    def released(self):
        """True once the slot went back to the loader."""
        return self._ring._current != self._token

    def _check(self):
        if self.released:
            raise RingError(
                f"the batch of step {self.step} was released (its slot may already hold another batch); "
                "copy the arrays you need before release() or before taking the next batch, "
                "e.g. np.array(batch.view_a)")

    @property
    def views(self):
        """Every view, in the recipe's order: a list of uint8 [count, C, H, W], read-only, valid
        until the batch is released."""
        self._check()
        return list(self._views)

    @property
    def groups(self):
        """The views by group (runs of one size): a list of uint8 [views, count, C, H, W]."""
        self._check()
        return list(self._groups)

    @property
    def view_a(self):
        """View 0, uint8 [count, C, H, W], read-only, valid until the batch is released."""
        self._check()
        return self._views[0]

    @property
    def view_b(self):
        """View 1, uint8 [count, C, H, W], read-only, valid until the batch is released."""
        self._check()
        if len(self._views) < 2:
            raise RingError("this ring's recipe makes one view per image: there is no view_b")
        return self._views[1]

    def release(self):
        """Gives the slot back to the loader now (idempotent)."""
        if not self.released:
            self._ring._release()

    def __repr__(self):
        state = "released" if self.released else "held"
        return f"<barlow.Batch step={self.step} epoch={self.epoch} count={self.count} {state}>"


class Ring:
    """The one reader of a barlow ring: `Ring(name_or_path, wait=30.0)`.

    Attaches like `trainer --shm NAME --wait SECONDS` does (same validation, ownership rule and
    messages): waits up to `wait` seconds for the loader's ring, refuses a ring another live
    reader holds (`ConsumerInUse`), continues at the ring's read position. Iterating yields
    `Batch`es in order and ends at the end of data; a dead loader raises `LoaderDied` within a
    few seconds. `info` is the header (batch_size, channels, recipe, views, groups (each: views,
    height, width), height and width (group 0's), mean, std, dataset_len, steps_per_epoch, seed,
    planned_steps, first_step, rank, world_size, slots);
    `stats()` the live statistics and the verdict (is the reader input-bound?).
    """

    def __init__(self, name, wait=30.0, allow_foreign_ring=False):
        self._native = _NativeRing(str(name), wait, allow_foreign_ring)
        self.name = str(name)
        self.info = self._native.info
        self._current = None  # token of the batch whose slot is held
        self._tokens = 0
        self._mapped = None

    @property
    def path(self):
        """The ring file."""
        return self._native.path

    @property
    def position(self):
        """Ring position of the next batch (batches consumed so far)."""
        return self._native.position

    def next(self, timeout=None):
        """The next batch (releasing the previous one), or None at the end of data. Raises
        `TimeoutError` when `timeout` seconds pass without one."""
        self._current = None  # the native take releases the previous slot first
        taken = self._native.take(timeout)
        if taken is None:
            return None
        if self._mapped is None:
            self._mapped = self._native.mapped()
        self._tokens += 1
        self._current = self._tokens
        i = self.info
        return Batch(self, self._tokens, taken, i["groups"], i["channels"], i["batch_size"],
                     self._mapped)

    def __iter__(self):
        return self

    def __next__(self):
        batch = self.next()
        if batch is None:
            raise StopIteration
        return batch

    def _release(self):
        self._current = None
        self._native.release()

    def stats(self):
        """Live statistics and the flow since the previous call (or since attaching): rates
        (produced_per_s, consumed_per_s), occupancy, the waiting shares (loader_wait,
        reader_wait), verdict and advice (the loader's and trainer's own definition), the
        ring's counters, state and whether the loader is alive."""
        return self._native.stats()

    def close(self):
        """Releases the held batch and detaches; a new reader continues with the next batch.
        A `next()` waiting in another thread raises `RingError` at once."""
        self._current = None
        self._native.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return repr(self._native)
