"""The paper's registration network: a U-Net that outputs a flow, and the spatial transformer; 2-D or 3-D.

Architecture (the authors' reference code, 2-D): input = moving and fixed concatenated (2 channels); a bias-free
3×3 conv to 16 features; encoder blocks of (3×3 conv → BatchNorm → LeakyReLU(0.01)) × 2 with 16, 32, 64,
128, 256 features and 2×2 max-pooling between levels; decoder: bilinear ×2 up-sampling, concatenation with
the skip, the same blocks back to 16; flow head 3×3 conv 16→2, weights ~ N(0, 1e-5), bias 0. Other convs
Kaiming-normal (fan_out). 1,968,002 parameters in 75 tensors. Flow channels: rows, then columns (pixels).

``dims=3`` is the same network with 3×3×3 convs, BatchNorm3d, 2×2×2 pooling, trilinear up-sampling and a
3-channel flow head (channel k along array axis k), as MONAI's networks take ``spatial_dims``: 5,895,603
parameters with the paper's widths, the same 75 tensors. Inputs of any size: the network pads every axis to a
multiple of 2^(levels−1) (zeros at the end) and crops the flow back, so that losses never see the padding.

Memory layout: by default the U-Net's parameters and activations are channels-last (NHWC): oneDNN's convolutions
skip their layout reorders, and a training step at 64 px, batch 32, ran 11-17% faster on a 2-core AMD EPYC
(Zen 4, AVX512). The flow it returns is contiguous (NCHW) whatever the layout inside. Values are those of the
NCHW network up to floating-point summation order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn as nn
import torch.nn.functional as F

from .warp import identity_grid, warp_tensor

FEATURES = (16, 32, 64, 128, 256)


ConvFactory = Callable[..., nn.Module]  # (cin, cout, kernel, padding=, bias=) -> a conv module


DIMS = (2, 3)
CONV: dict[int, type[nn.Conv2d] | type[nn.Conv3d]] = {2: nn.Conv2d, 3: nn.Conv3d}
BATCH_NORM: dict[int, type[nn.Module]] = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def check_dims(dims: int) -> int:
    if dims not in DIMS:
        raise ValueError(f"the registration network is 2-D or 3-D, got dims={dims!r}")
    return dims


class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, conv: ConvFactory = nn.Conv2d, dims: int = 2) -> None:
        norm = BATCH_NORM[check_dims(dims)]
        super().__init__(
            conv(cin, cout, 3, padding=1),
            norm(cout),
            nn.LeakyReLU(0.01),
            conv(cout, cout, 3, padding=1),
            norm(cout),
            nn.LeakyReLU(0.01),
        )


class UNet(nn.Module):
    """(moving, fixed) → flow (N, dims, *S) in voxels, channel k along array axis k; inputs (N, 1, *S) of any size.

    ``conv`` builds every 3×3(×3) conv but the flow head (HyperMorph passes its hyper-conv here); default the
    plain conv of ``dims``. ``channels_last``: the layout of parameters and activations (see the module's
    docstring; channels_last_3d for volumes); HyperMorph's per-sample grouped convs are slower channels-last, so
    its U-Net keeps the contiguous layout.
    """

    def __init__(self, features: tuple[int, ...] = FEATURES, conv: ConvFactory | None = None, channels_last: bool = True, dims: int = 2) -> None:
        super().__init__()
        self.dims = check_dims(dims)
        conv = conv or CONV[dims]
        self.features = tuple(features)
        self.channels_last = channels_last
        self.stem = conv(2, features[0], 3, padding=1, bias=False)
        self.encoder = nn.ModuleList(ConvBlock(features[max(i - 1, 0)], f, conv, dims) for i, f in enumerate(features))
        self.decoder = nn.ModuleList(ConvBlock(features[i + 1] + features[i], features[i], conv, dims) for i in reversed(range(len(features) - 1)))
        self.flow = CONV[dims](features[0], dims, 3, padding=1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.flow.weight, 0.0, 1e-5)
        assert self.flow.bias is not None
        nn.init.zeros_(self.flow.bias)
        if channels_last:
            cast(Any, self).to(memory_format=self.memory_format)  # torch's stubs lack the keyword; .to(device) keeps it

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.dims == 2 else torch.channels_last_3d

    @property
    def multiple(self) -> int:
        return 2 ** (len(self.features) - 1)

    def forward(self, moving: torch.Tensor, fixed: torch.Tensor) -> torch.Tensor:
        size = tuple(fixed.shape[2:])
        if len(size) != self.dims:
            raise ValueError(f"this network is {self.dims}-D; it was given images of shape {size}")
        x = torch.cat([moving, fixed], dim=1)
        padding = [(-s) % self.multiple for s in size]
        if any(padding):  # zeros at the end of each axis; F.pad lists the last axis first
            x = F.pad(x, [v for p in reversed(padding) for v in (0, p)])
        if self.channels_last:
            x = x.contiguous(memory_format=self.memory_format)
        x = self.stem(x)
        skips = []
        pool = F.max_pool2d if self.dims == 2 else F.max_pool3d
        for i, block in enumerate(self.encoder):
            if i:
                x = pool(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            x = F.interpolate(x, scale_factor=2, mode="bilinear" if self.dims == 2 else "trilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        flow = self.flow(x)
        if any(padding):
            flow = flow[(slice(None), slice(None)) + tuple(slice(0, s) for s in size)]
        return flow.contiguous()


class SpatialTransformer(nn.Module):
    """Warps with regbench's one warper; caches the identity grid per shape and device."""

    def __init__(self) -> None:
        super().__init__()
        self._grids: dict[tuple, torch.Tensor] = {}

    def forward(self, image: torch.Tensor, flow: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        key = (tuple(flow.shape[2:]), flow.device)
        if key not in self._grids:
            self._grids[key] = identity_grid(key[0], device=flow.device)
        return warp_tensor(image, flow, mode=mode, grid=self._grids[key])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
