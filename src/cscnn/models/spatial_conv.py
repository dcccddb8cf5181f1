"""The spatial attention's convolution (few input channels, one output map), computed as one matrix product
on small maps.

A k x k convolution from C maps of H x W to one map is a linear map from C*H*W numbers to H*W numbers. On
the small maps of the backbone's later layers PyTorch's convolution kernels spend most of their time on
setup and on the zero padding (a 7 x 7 kernel over a 4 x 4 map is mostly padding), and their backward pass
for a single output channel is slow: on 1152 maps of 16 x 16, forward + backward took 22 ms as a
convolution and 9 ms as this product; 5 ms vs 0.6 ms at 8 x 8, 1.2 ms vs 0.1 ms at 4 x 4
(benchmarks/train_throughput.py measures the whole step). The matrix is gathered from the kernel on every
call, so the parameters, their gradients and the state dict are exactly those of `nn.Conv2d`. Larger maps
(over `MAX_MATRIX_PIXELS`) use the convolution: the matrix grows with the square of the map.
"""

from __future__ import annotations

import torch
from torch import nn

MAX_MATRIX_PIXELS = 256  # H*W up to which the product is used (index: C*H*W x H*W int64, 1.5 MB at 16 x 16)


def _kernel_index(channels: int, kernel: int, height: int, width: int) -> torch.Tensor:
    """[C*H*W, H*W]: for input pixel (c, q) and output pixel p, the flat index of the kernel weight that links
    them (`nn.Conv2d` is a cross-correlation with zero padding k//2), or C*k*k (a zero) where none does."""
    pad = kernel // 2
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    out_y, out_x = ys.reshape(1, -1), xs.reshape(1, -1)  # output pixels p along dim 1
    in_y, in_x = ys.reshape(-1, 1), xs.reshape(-1, 1)  # input pixels q along dim 0
    ky, kx = in_y - out_y + pad, in_x - out_x + pad
    inside = (ky >= 0) & (ky < kernel) & (kx >= 0) & (kx < kernel)
    taps, zero = kernel * kernel, channels * kernel * kernel
    return torch.cat([torch.where(inside, c * taps + ky * kernel + kx, zero) for c in range(channels)], dim=0)


class SpatialConv(nn.Conv2d):
    """`nn.Conv2d(channels, 1, kernel, padding=kernel // 2)` on maps of a known size."""

    def __init__(self, channels: int, kernel: int, height: int, width: int) -> None:
        super().__init__(channels, 1, kernel_size=kernel, padding=kernel // 2)
        self.map_shape = (height, width)
        index = _kernel_index(channels, kernel, height, width) if height * width <= MAX_MATRIX_PIXELS else None
        self.register_buffer("matrix_index", index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.matrix_index is None or x.shape[2:] != self.map_shape:
            return super().forward(x)
        weights = torch.cat([self.weight.reshape(-1), self.weight.new_zeros(1)])
        # gather: its backward is a scatter-add, ~30x faster here than indexing's accumulate (index_put_)
        matrix = weights.gather(0, self.matrix_index.reshape(-1)).view(self.matrix_index.shape)
        out = torch.addmm(self.bias, x.reshape(len(x), -1), matrix)
        return out.view(len(x), 1, *self.map_shape)
