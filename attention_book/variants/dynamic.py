r"""Weights computed from the input itself: dynamic convolution and dynamic routing.

Attention computes its weights by comparing a query with every key. Dynamic convolution
(Wu et al., 2019) skips the comparison: the current token alone predicts, with one linear
map, a softmax-normalised kernel over a fixed window of its neighbours. It is attention
over a band of ``K`` keys whose weights depend on the query only, and it costs
:math:`O(L K)` instead of :math:`O(L^2)`.

Dynamic routing between capsules (Sabour et al., 2017) is attention-like in another way:
each lower capsule ``i`` distributes itself over the upper capsules ``j`` with coupling
coefficients :math:`c_{ij} = \operatorname{softmax}_j(b_{ij})`, and the logits grow with the
agreement :math:`\hat{\mathbf u}_{j|i}^\top \mathbf v_j` between a prediction and the
output it helped to form. The softmax runs over the *outputs* for each input (attention
normalises over the inputs for each query), and the assignment is iterated a fixed number
of times instead of being computed once.

Shapes: ``N`` batch, ``L`` positions, ``E`` features, ``H`` heads, ``K`` the kernel size;
``I`` input capsules, ``J`` output capsules, ``D`` the output capsules' features.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book._checks import (
    check_divisible,
    check_exact_ndim,
    check_float,
    check_int,
    fmt_shape,
)
from attention_book.output import AttentionOutput

__all__ = ["DynamicConv", "RoutingOutput", "dynamic_routing", "squash"]


class DynamicConv(nn.Module):
    r"""Dynamic convolution: each position predicts its own kernel over its window.

    .. math::

        W_{i,h,:} = \operatorname{softmax}_k\!\left((W^Q \mathbf x_i)_{h,:}\right), \qquad
        \mathbf o_{i,c} = \sum_{k=0}^{K-1} W_{i,h(c),k}\; \mathbf x_{i - P + k,\, c}

    with :math:`W^Q \in \mathbb R^{HK \times E}`, :math:`h(c)` the head of feature ``c``
    (head ``h`` holds the features ``h E/H .. (h+1) E/H - 1`` and all of them share the
    head's kernel), and the offset :math:`P = K - 1` when causal (the window is the last
    ``K`` positions up to ``i``) or :math:`P = K // 2` when centred (odd ``K``). Positions
    before the start or after the end count as zero vectors; their weights stay in the
    softmax, so near the edges a row of the equivalent ``(L, L)`` band matrix sums to less
    than 1. There is no input or output projection (Wu et al. wrap one around this core).

    Args:
        embed_dim: ``E``.
        kernel_size: ``K``, the window's length.
        num_heads: ``H``; must divide ``embed_dim``.
        causal: Look at the last ``K`` positions (True) or at a centred window (False,
            odd ``K`` only).

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size is below 1, ``num_heads`` does not divide ``embed_dim`` or
            ``kernel_size`` is even without ``causal``.

    Example:
        >>> conv = DynamicConv(embed_dim=4, kernel_size=3, num_heads=2)
        >>> output, weights = conv(torch.randn(1, 5, 4))  # x: (N, L, E)
        >>> output.shape, weights.shape  # weights: (N, H, L, K)
        (torch.Size([1, 5, 4]), torch.Size([1, 2, 5, 3]))
        >>> torch.allclose(weights.sum(dim=-1), torch.ones(1, 2, 5))  # a softmax over K
        True
    """

    def __init__(
        self, embed_dim: int, kernel_size: int, num_heads: int, *, causal: bool = True
    ) -> None:
        super().__init__()
        check_int("embed_dim", embed_dim, minimum=1)
        check_int("kernel_size", kernel_size, minimum=1)
        check_int("num_heads", num_heads, minimum=1)
        check_divisible("embed_dim", embed_dim, "num_heads", num_heads)
        if not causal and kernel_size % 2 == 0:
            msg = f"kernel_size must be odd for a centred window (causal=False); got {kernel_size}"
            raise ValueError(msg)
        self.embed_dim, self.kernel_size, self.num_heads = embed_dim, kernel_size, num_heads
        self.causal = causal
        self.kernel_proj = nn.Linear(embed_dim, num_heads * kernel_size, bias=False)  # W^Q

    def forward(self, x: Tensor) -> AttentionOutput:
        """Mix each head's features of ``x (N, L, E)`` over the window with predicted weights.

        Returns an :class:`~attention_book.AttentionOutput` with ``output (N, L, E)`` and
        ``weights (N, H, L, K)``: ``weights[..., i, k]`` multiplies position ``i - P + k``.
        """
        x = check_float("x", x)
        check_exact_ndim("x", x, 3, "(N, L, E)")
        if x.shape[-1] != self.embed_dim:
            msg = f"x must have E = {self.embed_dim} features (N, L, E); got {fmt_shape(x.shape)}"
            raise ValueError(msg)
        num, length, _ = x.shape
        heads, size = self.num_heads, self.kernel_size
        logits = self.kernel_proj(x).view(num, length, heads, size)  # (N, L, H * K) -> (N, L, H, K)
        weights = torch.softmax(logits, dim=-1).transpose(1, 2)  # (N, H, L, K)
        before = size - 1 if self.causal else size // 2
        values = x.reshape(num, length, heads, -1).transpose(1, 2)  # (N, H, L, E / H)
        padded = F.pad(values, (0, 0, before, size - 1 - before))  # (N, H, L + K - 1, E / H)
        windows = padded.unfold(2, size, 1)  # (N, H, L, E / H, K): window i starts at i - before
        # (N, H, L, E / H, K) @ (N, H, L, K, 1) -> (N, H, L, E / H, 1)
        mixed = (windows @ weights.unsqueeze(-1)).squeeze(-1)
        output = mixed.transpose(1, 2).reshape(num, length, self.embed_dim)  # (N, L, E)
        return AttentionOutput(output, weights)

    def extra_repr(self) -> str:
        """Show the sizes in ``print(module)``."""
        return (
            f"embed_dim={self.embed_dim}, kernel_size={self.kernel_size}, "
            f"num_heads={self.num_heads}, causal={self.causal}"
        )


def squash(s: Tensor, dim: int = -1) -> Tensor:
    r"""Shrink a vector's length into ``[0, 1)`` and keep its direction (Sabour et al., 2017).

    .. math::

        \operatorname{squash}(\mathbf s) = \frac{\|\mathbf s\|^2}{1 + \|\mathbf s\|^2}
        \frac{\mathbf s}{\|\mathbf s\|}, \qquad \operatorname{squash}(\mathbf 0) = \mathbf 0

    The zero vector maps to zero with a zero gradient (no NaN).

    Args:
        s: ``(..., D)`` vectors (along ``dim``).
        dim: The dim that holds the vectors' features.

    Returns:
        The squashed vectors, same shape as ``s``.

    Raises:
        TypeError: If ``s`` is not floating point.

    Example:
        >>> squash(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))  # lengths 5 and 0
        tensor([[0.5769, 0.7692],
                [0.0000, 0.0000]])
    """
    s = check_float("s", s)
    squared = (s * s).sum(dim=dim, keepdim=True)  # (..., 1)
    nonzero = squared > 0
    # sqrt of a stand-in 1 where the norm is 0: its gradient there is finite, and unused
    norm = torch.where(nonzero, torch.sqrt(torch.where(nonzero, squared, 1.0)), 0.0)
    return s * norm / (1.0 + squared)


class RoutingOutput(NamedTuple):
    r"""What :func:`dynamic_routing` returns.

    .. math::

        \mathbf v_j = \operatorname{squash}\!\Big(\sum_i c_{ij}\, \hat{\mathbf u}_{j|i}\Big)

    Attributes:
        outputs: ``(N, J, D)``, the output capsules :math:`\mathbf v_j`.
        coupling: ``(N, I, J)``, the coupling coefficients :math:`c_{ij}` of the last
            iteration (each row sums to 1 over ``J``).

    Example:
        >>> out = dynamic_routing(torch.ones(1, 2, 3, 4))
        >>> out.outputs.shape, out.coupling.shape
        (torch.Size([1, 3, 4]), torch.Size([1, 2, 3]))
    """

    outputs: Tensor
    coupling: Tensor


def dynamic_routing(predictions: Tensor, num_iterations: int = 3) -> RoutingOutput:
    r"""Route predictions of input capsules to output capsules by agreement (Sabour et al., 2017).

    .. math::

        b_{ij} \leftarrow 0; \quad \text{repeat } r \text{ times:} \quad
        c_{ij} = \operatorname{softmax}_j(b_{ij}), \quad
        \mathbf v_j = \operatorname{squash}\!\Big(\sum_i c_{ij}\, \hat{\mathbf u}_{j|i}\Big),
        \quad b_{ij} \leftarrow b_{ij} + \hat{\mathbf u}_{j|i}^\top \mathbf v_j

    Each input capsule ``i`` splits itself over the outputs; predictions that agree with
    the output they help to form get a larger share at the next iteration. Like attention,
    the outputs are weighted sums with softmax weights; unlike attention, the softmax runs
    over the outputs ``j`` for each input (so an output's weights need not sum to 1), the
    score is the agreement with the current output, and the assignment is iterated.
    Gradients flow through every iteration.

    Args:
        predictions: ``(N, I, J, D)``, the prediction :math:`\hat{\mathbf u}_{j|i}` of input
            capsule ``i`` for output capsule ``j``.
        num_iterations: :math:`r`, at least 1 (Sabour et al. use 3).

    Returns:
        :class:`RoutingOutput` with ``outputs (N, J, D)`` and the last iteration's
        ``coupling (N, I, J)``.

    Raises:
        TypeError: If ``predictions`` is not floating point or ``num_iterations`` not an int.
        ValueError: If ``predictions`` is not 4-D or ``num_iterations`` is below 1.

    Example:
        >>> u = torch.tensor([[[2.0, 0.0], [-1.0, 0.0]],  # input 0's predictions for j = 0, 1
        ...                   [[2.0, 0.0], [1.0, 0.0]],  # inputs 0 and 1 agree on output 0
        ...                   [[0.0, 1.0], [0.0, 2.0]],
        ...                   [[0.0, -1.0], [0.0, 2.0]]])  # inputs 2 and 3 agree on output 1
        >>> outputs, coupling = dynamic_routing(u[None])  # (N, I, J, D) = (1, 4, 2, 2)
        >>> coupling[0].round(decimals=2)
        tensor([[0.9700, 0.0300],
                [0.9700, 0.0300],
                [0.0300, 0.9700],
                [0.0300, 0.9700]])
        >>> outputs[0].round(decimals=2)  # lengths below 1
        tensor([[0.9400, 0.0000],
                [0.0000, 0.9400]])
    """
    predictions = check_float("predictions", predictions)
    check_exact_ndim("predictions", predictions, 4, "(N, I, J, D)")
    check_int("num_iterations", num_iterations, minimum=1)
    logits = predictions.new_zeros(predictions.shape[:-1])  # b: (N, I, J)
    for iteration in range(num_iterations):
        coupling = torch.softmax(logits, dim=-1)  # softmax over the outputs J: (N, I, J)
        # sum_i c_ij u_j|i: (N, I, J, 1) * (N, I, J, D) -> sum over I -> (N, J, D)
        outputs = squash((coupling.unsqueeze(-1) * predictions).sum(dim=1))
        if iteration < num_iterations - 1:
            # agreement u_j|i . v_j: (N, I, J, D) * (N, 1, J, D) -> sum over D -> (N, I, J)
            logits = logits + (predictions * outputs.unsqueeze(1)).sum(dim=-1)
    return RoutingOutput(outputs, coupling)
