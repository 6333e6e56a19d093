"""The one spatial transformer of regbench, shared by every method, metric and test.

Convention: a flow has shape (2, H, W) in pixels; channel 0 is the row (y) displacement, channel 1 the column
(x) displacement, as in the authors' reference code. A flow ``u`` maps the fixed grid into the moving image:
``moved(p) = moving(p + u(p))``. Sampling is ``grid_sample(align_corners=True)`` with zero padding: bilinear
for images, nearest for label maps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a function needs it: `import regbench` stays light (no torch)
    import torch


def identity_grid(shape: tuple[int, ...], device: torch.device | str | None = None) -> torch.Tensor:
    """Pixel coordinates, shape (ndim, *shape), float32; channel order matches the flow's (row, column[, ...])."""
    import torch

    axes = [torch.arange(s, dtype=torch.float32, device=device) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def warp_tensor(image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear", grid: torch.Tensor | None = None) -> torch.Tensor:
    """Warp a batch ``image`` (N, C, *S) with ``flow`` (N, ndim, *S) in pixels; differentiable."""
    import torch
    import torch.nn.functional as F

    spatial = image.shape[2:]
    if grid is None:
        grid = identity_grid(tuple(spatial), device=flow.device)
    coords = grid.unsqueeze(0) + flow
    # Filled on the device: torch.tensor(list, device="cuda") copies from the host and blocks it until the device
    # is idle (pytorch/pytorch#120996), once per warp, i.e. per training step. The same float32 values.
    scale = torch.empty(len(spatial), device=flow.device, dtype=flow.dtype)
    for axis, size in enumerate(spatial):
        scale[axis] = 2.0 / max(size - 1, 1)
    coords = coords * scale.view(1, -1, *([1] * len(spatial))) - 1.0
    # grid_sample wants the last dimension ordered (x, y[, z]): reverse our (row, column[, ...]) order.
    coords = coords.movedim(1, -1).flip(-1)
    return F.grid_sample(image, coords, mode=mode, padding_mode="zeros", align_corners=True)


def warp(image: np.ndarray, flow: np.ndarray, mode: str = "bilinear") -> np.ndarray:
    """Warp one 2-D/3-D numpy image with a (ndim, *S) pixel flow. ``mode``: 'bilinear' or 'nearest'."""
    import torch

    image = np.asarray(image)
    flow = np.asarray(flow, dtype=np.float32)
    if flow.shape != (image.ndim, *image.shape):
        raise ValueError(f"flow shape {flow.shape} does not fit image shape {image.shape}: expected {(image.ndim, *image.shape)}")
    with torch.no_grad():
        out = warp_tensor(
            torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None],
            torch.from_numpy(np.ascontiguousarray(flow))[None],
            mode=mode,
        )[0, 0].numpy()
    return out.astype(image.dtype) if mode == "nearest" else out.astype(np.float32)


def samples_inside(flow: np.ndarray) -> np.ndarray:
    """Where ``p + u(p)`` lies inside the grid (0 ≤ position ≤ n - 1 along every axis): there every linear
    resampler agrees with :func:`warp`; outside, libraries pad differently (ITK replicates the edge half a voxel
    out and gives 0 beyond, grid_sample blends toward zero over one voxel)."""
    flow = np.asarray(flow)
    inside = np.ones(flow.shape[1:], dtype=bool)
    for axis, size in enumerate(flow.shape[1:]):
        position = np.expand_dims(np.arange(size), tuple(k for k in range(flow.ndim - 1) if k != axis)) + flow[axis]
        inside &= (position >= 0) & (position <= size - 1)
    return inside


def warp_label(label: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Warp an integer label map with nearest-neighbour sampling (labels stay in the label set)."""
    return warp(label, flow, mode="nearest")


def resize_volume(volume: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A volume, or a (C, *S) stack of volumes, resampled trilinearly with corners aligned onto ``shape`` (float32):
    the same [-1, 1] normalised coordinates on either grid."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))
    batch = tensor[None, None] if tensor.ndim == 3 else tensor[None]
    out = torch.nn.functional.interpolate(batch, size=tuple(int(n) for n in shape), mode="trilinear", align_corners=True)[0]
    return (out[0] if tensor.ndim == 3 else out).numpy()
