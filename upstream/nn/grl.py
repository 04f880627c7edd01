"""Gradient reversal (Ganin & Lempitsky 2015): identity forward, -scale * gradient backward.

JOOCI puts it (scale 1/10) between the other encoder and the content decoder, so the decoder
learns to predict content labels while the other encoder is pushed to make that impossible.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    return _Reverse.apply(x, scale)


class GradientReversal(nn.Module):
    """y = x; dL/dx = -scale * dL/dy.

    Example:
        >>> x = torch.ones(3, requires_grad=True)
        >>> GradientReversal(0.5)(x).sum().backward()
        >>> x.grad.tolist()
        [-0.5, -0.5, -0.5]
    """

    def __init__(self, scale: float = 0.1):
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return grad_reverse(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}"
