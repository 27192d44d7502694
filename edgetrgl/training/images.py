"""The input images beside module k's inputs, for objectives that read them (InfoPro's decoder).

Module 1 reads the images themselves; module k > 1 reads cached (or recomputed) features, so its
objective needs the images those features came from, in the same order and with the same
augmentation. A cache stores ``views`` augmented views of the training set, each written in
dataset order from a seeded loader (:meth:`ModuleInputs._view_inputs`); the same loader, run again,
gives the same images. They are gathered once per view into host memory (the data set's size in
fp32 per view: the cost of reconstructing images from cached features) and served in the epoch's
order.
"""

from __future__ import annotations

from typing import Iterator

import torch

from edgetrgl.data import make_loader
from edgetrgl.training.inputs import _VIEW_SEED, ModuleInputs, epoch_order


class ImageBatches:
    """Serves ``((features, images), labels)`` batches to module k (see the module docstring)."""

    def __init__(self, inputs: ModuleInputs) -> None:
        self.inputs = inputs
        self._views: dict[int, torch.Tensor] = {}

    def train_batches(self, k: int, epoch: int) -> Iterator:
        inputs = self.inputs
        if k == 0 or inputs.mode == "none":
            yield from self._through_prefix(k, epoch)
            return
        images = self._view(epoch % inputs.views)
        order = epoch_order(len(inputs.train_set), inputs.seed, epoch)
        start = 0
        for h, y in inputs.train_batches(k, epoch):  # the same order, batch by batch
            idx = order[start:start + y.shape[0]]
            start += y.shape[0]
            yield (h, images[idx].to(inputs.device, non_blocking=True)), y

    def _through_prefix(self, k: int, epoch: int) -> Iterator:
        inputs = self.inputs
        loader = make_loader(inputs.train_set, inputs.batch_size, shuffle=True, augment=inputs.augment,
                             seed=inputs.seed, epoch=epoch)
        for x, y in loader:
            x, y = x.to(inputs.device, non_blocking=True), y.to(inputs.device, non_blocking=True)
            h = x
            with torch.no_grad():
                for j in range(k):
                    inputs.stages[j].eval()  # frozen: BatchNorm uses its running statistics
                    h = inputs.stages[j](h)
            yield (h, x), y

    def _view(self, view: int) -> torch.Tensor:
        if view not in self._views:
            inputs = self.inputs
            loader = make_loader(inputs.train_set, inputs.batch_size, shuffle=False, augment=inputs.augment,
                                 seed=inputs.seed + _VIEW_SEED * (view + 1), epoch=0)
            self._views[view] = torch.cat([x for x, _ in loader])
        return self._views[view]
