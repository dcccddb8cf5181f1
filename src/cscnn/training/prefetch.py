"""Batches assembled ahead of the step, so an accelerator does not wait for the CPU between steps.

Assembly (the shuffle buffer's row shuffle, item-id dropout, this rank's share, the feature gather and the
gather of the batch's unique images) runs in one background thread, at most `train.prefetch_batches`
batches ahead (a bounded queue: memory is those batches). The thread consumes the same generators in the
same order as the loop did inline, so the data order — and with it the 1-vs-N-worker equivalence — does
not change. numpy, pandas and torch release the GIL in their gathers and in the step's kernels, so the two
overlap even in one process. On CUDA the assembled tensors are put in pinned (page-locked) host memory and
copied with `non_blocking=True`: the copy of batch n+1 overlaps the step on batch n.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch

from cscnn.models import Batch
from cscnn.models.ctr import ImageSource, pad_to_bucket

T = TypeVar("T")
_DONE = object()
AUTO_DEPTH = 4  # `train.prefetch_batches=-1` on CUDA: enough to hide a slow batch, ~4 batches of memory


def depth_for(setting: int, device: torch.device) -> int:
    """How far ahead to assemble: the setting, or for -1 (auto) `AUTO_DEPTH` on CUDA and inline on CPU.
    On a CPU-only machine the step already uses every core; a producer thread only takes turns with it
    (measured on 2 cores: docs/benchmarks.md)."""
    if setting >= 0:
        return setting
    return AUTO_DEPTH if device.type == "cuda" else 0


def ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    """`items`, produced by a background thread at most `depth` ahead (0: inline, no thread).

    An exception in the producer is raised here, at the item where it happened; closing this generator
    (a `break`, an error in the step) stops the producer at its next item.
    """
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put((_DONE, None))
        except BaseException as exc:  # handed to the consumer, raised there
            slots.put((_DONE, exc))

    worker = threading.Thread(target=produce, name="cscnn-batch-assembly", daemon=True)
    worker.start()
    try:
        while True:
            item, error = slots.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                slots.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)


@dataclass
class GatheredImages:
    """One batch's images, gathered ahead of its step: what `CTRModel.visual_for` will ask its source for
    (the batch's unique rows, padded to the CNN's bucket, or every row without dedup). A fetch of other rows
    goes to the source itself, so the result is the same either way."""

    rows: torch.Tensor
    images: torch.Tensor
    categories: torch.Tensor
    source: ImageSource

    def __len__(self) -> int:
        return len(self.source)

    def fetch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if rows.shape == self.rows.shape and torch.equal(rows, self.rows.to(rows.device)):
            return self.images.to(rows.device, non_blocking=True), self.categories.to(rows.device, non_blocking=True)
        return self.source.fetch(rows)


def gather_images(batch: Batch, source: ImageSource, dedup: bool, pin: bool) -> GatheredImages:
    """The images `batch`'s step will read, gathered now (in the assembly thread)."""
    rows = pad_to_bucket(torch.unique(batch.item_row) if dedup else batch.item_row)
    images, categories = source.fetch(rows)
    if pin:
        images, categories = images.pin_memory(), categories.pin_memory()
    return GatheredImages(rows, images, categories, source)
