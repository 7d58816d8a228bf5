"""The map tower split into a frozen trunk and a trainable head, with the head's parameters swapped in per zoom.

Why the split: the photo side is frozen and so is the map tower before its last UNFROZEN_BLOCKS blocks, so the
trunk gives the same output for a tile in every epoch. For tiles held in memory it is run once per zoom and only
the head runs per step (about 5x fewer FLOPs for ViT-B/32 with 2 of 12 blocks trained). The split forward is
checked against the plain forward at start-up and abandoned when they disagree (an architecture this code does
not know).
"""

from __future__ import annotations

import logging
from typing import Any, Dict

from ..model.encoders import autocast, head_parameter_names

log = logging.getLogger("hiergeo.training")


def _make_head_module(visual, first_trainable_block: int):
    import torch

    class Head(torch.nn.Module):
        """The tail of an open_clip VisionTransformer from block k on; parameters named 'visual.<name>'."""

        def __init__(self):
            super().__init__()
            self.visual = visual

        def forward(self, x):
            tr = self.visual.transformer
            if not tr.batch_first:
                x = x.transpose(0, 1)
            for block in tr.resblocks[first_trainable_block:]:
                x = block(x)
            if not tr.batch_first:
                x = x.transpose(0, 1)
            pooled, _ = self.visual._pool(x)
            if self.visual.proj is not None:
                pooled = pooled @ self.visual.proj
            return pooled

    return Head()


class MapTower:
    """A map tower whose head parameters are swapped in per zoom; knows how to run trunk and head separately.

    `features(images)` is what stays fixed during a zoom's training (no gradients): the output of the frozen
    blocks when the split forward works for this architecture, else the images themselves.
    `embed(params, features)` runs the rest with `params` (the zoom's trainable head) and carries gradients.
    """

    def __init__(self, visual, unfrozen_blocks: int, device: str):
        import torch

        self.visual = visual
        self.device = device
        self.head_names = head_parameter_names(visual, unfrozen_blocks)
        n_blocks = len(visual.transformer.resblocks)
        self.first_trainable_block = n_blocks - unfrozen_blocks
        self.split = False
        self._head: Any = None
        try:
            self._head = _make_head_module(visual, self.first_trainable_block)
            size = getattr(visual, "image_size", 224)
            size = size[0] if isinstance(size, (tuple, list)) else size
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                probe = torch.randn(2, 3, int(size), int(size), device=device)
                plain = visual(probe).float()
                split = self._head(self._trunk(probe)).float()
            self.split = bool(torch.allclose(plain, split, rtol=1e-4, atol=1e-5))
        except Exception as exc:  # an architecture whose forward this code does not mirror
            log.debug("split forward unavailable (%s); using the full forward", exc)
        if not self.split:
            log.info("map tower: full forward per step (the split trunk/head forward does not match this model)")

    def _trunk(self, images):
        v = self.visual
        x = v._embeds(images)
        tr = v.transformer
        if not tr.batch_first:
            x = x.transpose(0, 1)
        for block in tr.resblocks[: self.first_trainable_block]:
            x = block(x)
        if not tr.batch_first:
            x = x.transpose(0, 1)
        return x

    def head_state(self) -> Dict[str, Any]:
        params = dict(self.visual.named_parameters())
        return {n: params[n].detach().clone().float() for n in self.head_names}

    def features(self, images):
        """Fixed per-tile input of the trainable part (computed without gradients, on the device)."""
        import torch

        images = images.to(self.device, non_blocking=True)
        if not self.split:
            return images
        with torch.no_grad(), autocast(self.device):
            return self._trunk(images)

    def embed(self, params: Dict[str, Any], features):
        """Unnormalised embeddings of `features` with the head `params` (gradients flow into params)."""
        from torch.func import functional_call

        features = features.to(self.device, non_blocking=True)
        if self.split:
            return functional_call(self._head, {f"visual.{n}": p for n, p in params.items()}, (features,), strict=False)
        return functional_call(self.visual, params, (features,), strict=False)
