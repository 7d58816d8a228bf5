"""Augmentation of the base stage: other orientations of a tile, other framings of a photo.

The per-zoom stage does not augment: the paper does not, and its frozen-trunk features are computed once per tile.
All randomness comes from torch's global generator, which the base stage seeds (inside a forked RNG state).
"""

from __future__ import annotations


def augment(photos, tiles, photo_jitter: bool = False):
    """Random dihedral orientation per tile and random mirroring per photo (base stage only); with photo_jitter
    also a random zoom-in crop (65-100% of the side) and a contrast/brightness change per photo.

    Why these: a ground photo looks in a random direction, so nothing in it ties the tile's north-up orientation
    to the photo; rotated and mirrored tiles are equally valid positives and multiply a small training set. A
    mirrored photo is still a plausible photo of the place.
    """
    import torch

    n = tiles.shape[0]
    k = torch.randint(0, 4, (n,))
    flip = torch.rand(n) < 0.5
    out = []
    for j in range(n):
        t = torch.rot90(tiles[j], int(k[j]), dims=(1, 2))
        out.append(torch.flip(t, dims=(2,)) if flip[j] else t)
    tiles = torch.stack(out)
    mirror = (torch.rand(photos.shape[0]) < 0.5).to(photos.device)
    photos = torch.where(mirror[:, None, None, None], torch.flip(photos, dims=(3,)), photos)
    if photo_jitter:
        photos = jitter_photos(photos)
    return photos, tiles


def jitter_photos(photos):
    """Another framing and exposure of the same scene: what a second photo from the same spot would differ by.

    Why: in the base stage the photo tower learns from a few hundred photos and otherwise memorises them; the
    held-out photos of a place are new framings of it. Works on preprocessed (normalised) tensors, one
    affine resampling for the whole batch.
    """
    import torch
    import torch.nn.functional as F

    n = photos.shape[0]
    scale = torch.empty(n).uniform_(0.65, 1.0)
    shift = (1.0 - scale)[:, None] * torch.empty(n, 2).uniform_(-1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(photos.device, photos.dtype), list(photos.shape), align_corners=False)
    out = F.grid_sample(photos, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2).to(photos.device, photos.dtype)
    brightness = torch.empty(n, 1, 1, 1).uniform_(-0.2, 0.2).to(photos.device, photos.dtype)
    return out * contrast + brightness
