"""RoIAlign as small matrix products: torchvision's `roi_align` (aligned=False, fixed sampling ratio)
in less CPU time, for inference.

RoIAlign averages, per output bin, `sampling_ratio` x `sampling_ratio` bilinear samples of a feature
map. Bilinear interpolation is a product of one weight along y and one along x, and torchvision's
border rules (a sample beyond -1 or the map's size counts zero, one inside is clamped to the map) act
on each axis alone, so every RoI's output is `Wy @ F @ Wx^T` per channel: `Wy` (bins x H) and `Wx`
(bins x W) hold the averaged interpolation weights. A RoI only touches a window of the map, so the
window is gathered first and the two products run on it. torchvision's CPU kernel visits every
sample of every channel one at a time, at a cost that does not depend on the RoI's size; the window
products cost more the larger the window, so RoIs with large windows stay with torchvision's kernel
(`WINDOW_CELLS_PER_SAMPLE`). On the shipped detector's own proposals (100 per image, 128 channels,
stride-4 level of 24 x 48-88 cells; 40 validation images, 2 CPU cores) pooling takes 8.7 ms per
image against 12.5 ms.

`WindowedMultiScaleRoIAlign` is torchvision's `MultiScaleRoIAlign` (the Faster R-CNN box head's
pooler) with this in place of `roi_align`; `models.optimize.prepare_for_inference` swaps it in on the
CPU. Outputs match torchvision's to float32 rounding (~1e-5). No gradients are needed or tested.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import LevelMapper, _convert_to_roi_format, _filter_input, _setup_scales

# Largest window tensor (RoIs x window cells x channels, float32 elements) built at once; more RoIs
# are pooled in chunks (~32 MB)
WINDOW_BUDGET = 8_000_000
# A RoI whose window holds more map cells than this many times RoIAlign's samples per RoI (7 x 7 bins
# x 2 x 2) is pooled by torchvision's kernel, whose cost does not grow with the RoI: on 2 CPU cores
# windowed pooling is faster up to ~2-3 cells per sample, and slower beyond
WINDOW_CELLS_PER_SAMPLE = 2.5


def axis_weights(
    start: Tensor, length: Tensor, size: int, bins: int, sampling_ratio: int
) -> tuple[Tensor, Tensor]:
    """Interpolation weights of RoIAlign along one axis.

    `start`, `length`: FloatTensor[K], each RoI's start and extent along the axis in feature-map
    cells (extent already at least 1, as RoIAlign makes it). Returns `weights` FloatTensor[K, bins,
    E] and `index` LongTensor[K, E]: bin b of RoI k is sum_e weights[k, b, e] * map[index[k, e]],
    the mean of its `sampling_ratio` bilinear samples, each clamped to the map as torchvision's
    RoIAlign clamps it (zero beyond -1 or `size`). E is the widest window any RoI needs.
    """
    n = bins * sampling_ratio
    offsets = (torch.arange(n, dtype=start.dtype, device=start.device) + 0.5) / n
    at = start[:, None] + offsets * length[:, None]  # [K, n] sample positions
    inside = ((at >= -1.0) & (at <= size)).to(start.dtype)
    at = at.clamp(min=0.0)
    low = at.floor().long()
    last = low >= size - 1
    low = low.clamp(max=size - 1)
    high = torch.where(last, low, low + 1)
    frac = torch.where(last, torch.zeros_like(at), at - low.to(at.dtype))
    origin = low.min(dim=1).values  # [K]
    extent = int((high.max(dim=1).values - origin).max()) + 1
    k = start.shape[0]
    weights = torch.zeros(k, n, extent, dtype=start.dtype, device=start.device)
    weights.scatter_add_(2, (low - origin[:, None])[..., None], ((1 - frac) * inside)[..., None])
    weights.scatter_add_(2, (high - origin[:, None])[..., None], (frac * inside)[..., None])
    index = (origin[:, None] + torch.arange(extent, device=start.device)).clamp(max=size - 1)
    return weights.view(k, bins, sampling_ratio, extent).mean(dim=2), index


def _pool_one_map(
    pixels: Tensor, height: int, width: int, boxes: Tensor, output_size: tuple[int, int], ratio: int
) -> Tensor:
    """`pixels` FloatTensor[H * W, C] (one map, row-major cells), `boxes` FloatTensor[K, 4] x1 y1 x2
    y2 in map cells -> FloatTensor[K, C, out_h, out_w]."""
    out_h, out_w = output_size
    k, channels = boxes.shape[0], pixels.shape[1]
    wy, iy = axis_weights(boxes[:, 1], (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0), height, out_h, ratio)
    wx, ix = axis_weights(boxes[:, 0], (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0), width, out_w, ratio)
    eh, ew = iy.shape[1], ix.shape[1]
    cells = (iy[:, :, None] * width + ix[:, None, :]).reshape(-1)
    window = pixels.index_select(0, cells).view(k, eh, ew * channels)
    rows = torch.bmm(wy, window).view(k, out_h, ew, channels)  # contract y
    pooled = torch.matmul(wx[:, None], rows)  # contract x: [K, out_h, out_w, C]
    return pooled.permute(0, 3, 1, 2).contiguous()


def roi_align_windowed(
    features: Tensor, rois: Tensor, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int
) -> Tensor:
    """torchvision's `roi_align(features, rois, output_size, spatial_scale, sampling_ratio,
    aligned=False)` for `sampling_ratio` >= 1 (RoIs larger than `WINDOW_CELLS_PER_SAMPLE` allows go
    to that kernel).

    `features` FloatTensor[N, C, H, W] (any memory format; channels-last avoids a copy), `rois`
    FloatTensor[K, 5]: batch index, then x1 y1 x2 y2 in input pixels (multiplied by `spatial_scale`
    to reach map cells). Returns FloatTensor[K, C, out_h, out_w] in `rois`' order.
    """
    if sampling_ratio < 1:
        raise ValueError("roi_align_windowed needs a fixed sampling ratio (>= 1)")
    n, channels = features.shape[:2]
    if rois.shape[0] == 0:
        return features.new_zeros((0, channels, *output_size))
    boxes = rois[:, 1:] * spatial_scale
    cells = ((boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0) + 2).prod(dim=1)  # each RoI's window
    samples = output_size[0] * output_size[1] * sampling_ratio**2
    small = cells <= WINDOW_CELLS_PER_SAMPLE * samples
    everything_small = bool(small.all())
    if n == 1 and everything_small:  # the service's case: one image, digit-sized proposals
        return _pool_image(features[0], boxes, output_size, sampling_ratio)
    result = features.new_zeros((rois.shape[0], channels, *output_size))
    if not everything_small:
        large = torch.nonzero(~small).flatten()
        result[large] = roi_align(features, rois[large], output_size, spatial_scale, sampling_ratio)
    batch = rois[:, 0].long()
    for image in range(n):
        chosen = torch.nonzero(small & (batch == image)).flatten()
        if chosen.numel():
            result[chosen] = _pool_image(features[image], boxes[chosen], output_size, sampling_ratio)
    return result


def _pool_image(feature: Tensor, boxes: Tensor, output_size: tuple[int, int], ratio: int) -> Tensor:
    """`feature` FloatTensor[C, H, W], `boxes` FloatTensor[K, 4] in map cells -> FloatTensor[K, C,
    out_h, out_w], in chunks of RoIs whose windows fit `WINDOW_BUDGET`."""
    channels, height, width = feature.shape
    pixels = feature.permute(1, 2, 0).reshape(height * width, channels)  # a view when channels-last
    span = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1.0).amax(dim=0) + 2  # widest window, cells
    per_roi = int(span[0].clamp(max=width) * span[1].clamp(max=height)) * channels
    step = max(1, WINDOW_BUDGET // max(per_roi, 1))
    parts = [
        _pool_one_map(pixels, height, width, boxes[i : i + step], output_size, ratio)
        for i in range(0, boxes.shape[0], step)
    ]
    return torch.cat(parts) if len(parts) > 1 else parts[0]


class WindowedMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's `MultiScaleRoIAlign` (same levels, scales and outputs) pooling with
    `roi_align_windowed`; with an adaptive sampling ratio (<= 0) it pools as torchvision does."""

    scales: list[float] | None
    map_levels: LevelMapper | None

    @classmethod
    def like(cls, pooler: MultiScaleRoIAlign) -> WindowedMultiScaleRoIAlign:
        """A copy of `pooler` (its feature maps, output size, sampling ratio and level rule)."""
        copy = cls(
            pooler.featmap_names,
            pooler.output_size,
            pooler.sampling_ratio,
            canonical_scale=pooler.canonical_scale,
            canonical_level=pooler.canonical_level,
        )
        copy.scales, copy.map_levels = pooler.scales, pooler.map_levels
        return copy

    def forward(
        self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        """`x`: feature maps by name, FloatTensor[N, C, H_l, W_l]; `boxes`: per image FloatTensor[K_i,
        4] x1 y1 x2 y2 in input pixels; `image_shapes`: (height, width) of each input. Returns
        FloatTensor[sum K_i, C, out_h, out_w]."""
        maps = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                maps, image_shapes, self.canonical_scale, self.canonical_level
            )
        size = (int(self.output_size[0]), int(self.output_size[1]))
        rois = _convert_to_roi_format(boxes)
        pool = roi_align if self.sampling_ratio < 1 else roi_align_windowed
        if len(maps) == 1:
            return pool(maps[0], rois, size, self.scales[0], self.sampling_ratio)
        levels = self.map_levels(boxes)
        result = maps[0].new_zeros((rois.shape[0], maps[0].shape[1], *size))
        for level, (feature, scale) in enumerate(zip(maps, self.scales, strict=True)):
            chosen = torch.nonzero(levels == level).flatten()
            if chosen.numel():
                result[chosen] = pool(feature, rois[chosen], size, scale, self.sampling_ratio)
        return result
