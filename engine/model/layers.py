"""Streaming building blocks: causal convolutions whose left context is explicit per-slot state.

A `StateCursor` walks a module's state tensors in a fixed order: each causal convolution
takes its left context (`[B, C, P]`) from it and puts the updated one back. Called with no
input state it starts from zeros, which is what an offline run over a whole sequence does,
so chunked streaming and one offline call compute the same thing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class StateCursor:
    def __init__(self, states: list[Tensor] | None, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        self.states, self.batch, self.device, self.dtype = states, batch, device, dtype
        self.out: list[Tensor] = []

    def take(self, channels: int, length: int) -> Tensor:
        if self.states is None:
            return torch.zeros(self.batch, channels, length, device=self.device, dtype=self.dtype)
        return self.states[len(self.out)]

    def put(self, state: Tensor) -> None:
        self.out.append(state)


def masked_state(old: list[Tensor], new: list[Tensor], exec_mask: Tensor) -> list[Tensor]:
    """Rows whose exec flag is off keep their old state exactly."""
    out = []
    for o, n in zip(old, new):
        m = exec_mask.view(-1, *([1] * (o.dim() - 1)))
        out.append(torch.where(m, n, o))
    return out


class CausalConv1d(nn.Module):
    """Conv1d that sees only the past; the input length of a call must be a multiple of the stride."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1):
        super().__init__()
        if kernel < stride:
            raise ValueError("kernel must be >= stride")
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation, groups=groups)
        self.c_in, self.stride = c_in, stride
        self.context = (kernel - 1) * dilation + 1 - stride

    def forward(self, x: Tensor, cur: StateCursor) -> Tensor:
        if self.context == 0:
            return self.conv(x)
        full = torch.cat([cur.take(self.c_in, self.context), x], dim=-1)
        cur.put(full[..., -self.context :])
        return self.conv(full)

    def state_shape(self) -> tuple[int, int] | None:
        return (self.c_in, self.context) if self.context else None


def state_shapes(module: nn.Module) -> list[tuple[int, int]]:
    """Shapes (without batch) of a module's conv states, in the order the cursor meets them."""
    return [s for m in module.modules() if isinstance(m, CausalConv1d) and (s := m.state_shape()) is not None]


def zero_states(module: nn.Module, batch: int, device: torch.device, dtype: torch.dtype) -> list[Tensor]:
    return [torch.zeros(batch, c, n, device=device, dtype=dtype) for c, n in state_shapes(module)]


class ChannelNorm(nn.Module):
    """LayerNorm over channels of a [B, C, T] tensor (per time step: no look-ahead, no row mixing)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.conv = CausalConv1d(dim, dim, 3, dilation=dilation)
        self.proj = nn.Conv1d(dim, dim, 1)

    def forward(self, x: Tensor, cur: StateCursor) -> Tensor:
        h = self.conv(nn.functional.elu(x), cur)
        return x + self.proj(nn.functional.elu(h))


class ConvNeXtBlock(nn.Module):
    """Vocos-style block with a causal depthwise convolution."""

    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        self.dw = CausalConv1d(dim, dim, kernel, groups=dim)
        self.norm = ChannelNorm(dim)
        self.up = nn.Conv1d(dim, 3 * dim, 1)
        self.down = nn.Conv1d(3 * dim, dim, 1)

    def forward(self, x: Tensor, cur: StateCursor) -> Tensor:
        h = self.norm(self.dw(x, cur))
        return x + self.down(nn.functional.gelu(self.up(h)))
