r"""Attention rollout and attention flow (Abnar & Zuidema, 2020).

One layer's attention says which positions of the layer below a position read; stacked
layers mix what was already mixed, so the raw weights of a top layer say little about the
input tokens. Both methods follow the weights down through every layer. Each layer's heads
are fused first (mean, max or min over ``H``); with the residual term the fused matrix
:math:`A` becomes :math:`\hat A = \operatorname{rownorm}(\tfrac12 A + \tfrac12 I)`, since
the residual path carries as much as the attention does.

- **Rollout** multiplies the layers: :math:`\tilde A = \hat A_{\text{last}} \cdots \hat A_1`.
- **Flow** reads the layers as a graph whose edge from position ``i`` of layer ``l + 1`` to
  position ``j`` of layer ``l`` has capacity :math:`\hat A_{l+1}[i, j]`, and takes the
  maximum flow from each output position to each input position (computed by ``networkx``,
  an optional dependency: ``pip install 'attention_book[interpret]'``).

Example:
    >>> weights = [torch.full((1, 2, 3, 3), 1 / 3) for _ in range(2)]  # uniform, 2 layers
    >>> attention_rollout(weights)[0, 0]
    tensor([0.5000, 0.2500, 0.2500])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from attention_book._checks import (
    check_choice,
    check_exact_ndim,
    check_float,
    check_same_dtype,
    fmt_shape,
)

__all__ = ["HeadFusion", "attention_flow", "attention_rollout"]

#: How the heads of a layer are fused before rollout or flow: their mean, maximum or minimum.
HeadFusion = Literal["mean", "max", "min"]
HEAD_FUSIONS = ("mean", "max", "min")
NETWORKX_MISSING = (
    "attention_flow needs networkx: pip install 'attention_book[interpret]' or pip install networkx"
)


def _check_layers(weights: object, head_fusion: str) -> list[Tensor]:
    """Check one ``(N, H, L, L)`` tensor per layer, all of one shape and dtype."""
    if isinstance(weights, Tensor) or not isinstance(weights, Sequence):
        msg = f"weights must be a sequence of (N, H, L, L) tensors; got {type(weights).__name__}"
        raise TypeError(msg)
    if len(weights) == 0:
        msg = "weights must hold at least one layer (N, H, L, L); got an empty sequence"
        raise ValueError(msg)
    layers = [check_float(f"weights[{i}]", layer) for i, layer in enumerate(weights)]
    first = layers[0]
    for i, layer in enumerate(layers):
        name = f"weights[{i}]"
        check_exact_ndim(name, layer, 4, "(N, H, L, L)")
        if layer.shape[-1] != layer.shape[-2]:
            msg = f"{name} must be square (N, H, L, L); got {fmt_shape(layer.shape)}"
            raise ValueError(msg)
        if layer.shape != first.shape:
            msg = (
                f"{name} must have the shape of weights[0] (N, H, L, L) = "
                f"{fmt_shape(first.shape)}; got {fmt_shape(layer.shape)}"
            )
            raise ValueError(msg)
        check_same_dtype(name, layer, "weights[0]", first)
    check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
    return layers


def _fused(weights: Sequence[Tensor], head_fusion: str, residual: bool) -> list[Tensor]:
    """Each layer's heads fused to ``(N, L, L)``, with the residual term if asked for."""
    fused = []
    for layer in _check_layers(weights, head_fusion):
        if head_fusion == "mean":
            A = layer.mean(dim=1)  # (N, H, L, L) -> (N, L, L)
        elif head_fusion == "max":
            A = layer.amax(dim=1)
        else:
            A = layer.amin(dim=1)
        if residual:
            eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
            A = 0.5 * A + 0.5 * eye
            A = A / A.sum(dim=-1, keepdim=True)
        fused.append(A)
    return fused


def attention_rollout(
    weights: Sequence[Tensor], *, head_fusion: HeadFusion = "mean", residual: bool = True
) -> Tensor:
    r"""How much each output position draws on each input position, layers multiplied.

    .. math::

        \hat A_l = \operatorname{rownorm}\bigl(\tfrac12 A_l + \tfrac12 I\bigr), \qquad
        \tilde A = \hat A_{\text{last}} \cdots \hat A_2 \hat A_1

    :math:`A_l` is layer ``l``'s attention with its heads fused; without the residual term
    :math:`\hat A_l = A_l`. With mean fusion of softmax weights each row of the result sums
    to 1. The result is differentiable in ``weights``; the inputs are not modified.

    Args:
        weights: One ``(N, H, L, L)`` tensor of attention weights per layer, first layer
            first (rows are queries, columns keys), all of one shape and dtype.
        head_fusion: How the ``H`` heads become one matrix: their ``"mean"``, ``"max"`` or
            ``"min"``.
        residual: Add the identity for the residual path and renormalise the rows.

    Returns:
        ``(N, L, L)``: row ``i`` says how much output position ``i`` draws on each input
        position.

    Raises:
        TypeError: If ``weights`` is not a sequence of floating-point tensors of one dtype.
        ValueError: If ``weights`` is empty, a layer is not 4-D or not square, the layers
            differ in shape, or ``head_fusion`` is unknown.

    Example:
        >>> first = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # both positions read 1
        >>> second = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])  # both positions read 0
        >>> attention_rollout([first, second], residual=False)[0]  # 0 carries 1's token
        tensor([[0., 1.],
                [0., 1.]])
        >>> attention_rollout([first, second])[0]
        tensor([[0.5000, 0.5000],
                [0.2500, 0.7500]])
    """
    layers = _fused(weights, head_fusion, residual)
    rollout = layers[0]
    for layer in layers[1:]:
        rollout = layer @ rollout  # (N, L, L) @ (N, L, L) -> (N, L, L)
    return rollout


def attention_flow(
    weights: Sequence[Tensor], *, head_fusion: HeadFusion = "mean", residual: bool = True
) -> Tensor:
    r"""The maximum flow from each output position to each input position through the layers.

    .. math::

        F[i, j] = \frac{\operatorname{maxflow}(i^{(\text{last})} \to j^{(0)})}
                       {\sum_{j'} \operatorname{maxflow}(i^{(\text{last})} \to j'^{(0)})},
        \qquad c\bigl(i^{(l+1)} \to j^{(l)}\bigr) = \hat A_{l+1}[i, j]

    The graph has ``L`` nodes per layer boundary, from the input positions :math:`j^{(0)}`
    up to the output positions; the edge from position ``i`` of layer ``l + 1`` to
    position ``j`` of layer ``l`` has the capacity rollout uses, :math:`\hat A_{l+1}[i, j]`
    (heads fused, residual term added). A rollout path passes on the product of its
    weights; a flow is limited by the narrowest edge. Each value is computed with
    ``networkx.maximum_flow_value`` (shortest augmenting paths), and each output row is then normalised to sum to 1 as
    the authors' code does (a row of zero flow stays zero). ``L * L`` flow problems per
    example: about a second for ``L = 16`` and four layers. Not differentiable.

    Args:
        weights: One ``(N, H, L, L)`` tensor of attention weights per layer, first layer
            first (rows are queries, columns keys), all of one shape and dtype.
        head_fusion: How the ``H`` heads become one matrix: their ``"mean"``, ``"max"`` or
            ``"min"``.
        residual: Add the identity for the residual path and renormalise the rows.

    Returns:
        ``(N, L, L)`` in the dtype and on the device of ``weights``, without a graph: row
        ``i`` is output position ``i``'s normalised flow to each input position.

    Raises:
        ImportError: If ``networkx`` is not installed.
        TypeError: If ``weights`` is not a sequence of floating-point tensors of one dtype.
        ValueError: If ``weights`` is empty, a layer is not 4-D or not square, the layers
            differ in shape, or ``head_fusion`` is unknown.

    Example:
        >>> first = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
        >>> second = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
        >>> attention_flow([first, second])[0]  # rollout gives [0.25, 0.75] in row 1
        tensor([[0.5000, 0.5000],
                [0.3333, 0.6667]])
    """
    layers = _fused(weights, head_fusion, residual)
    try:
        import networkx as nx
        from networkx.algorithms.flow import build_residual_network
        from networkx.algorithms.flow import shortest_augmenting_path as augment
    except ImportError:
        raise ImportError(NETWORKX_MISSING) from None
    num_layers, (batch, length, _) = len(layers), layers[0].shape
    # plain floats for networkx: (layers, N, L, L)
    capacities = torch.stack([A.detach() for A in layers]).double().cpu().tolist()
    flows = torch.zeros(batch, length, length, dtype=torch.float64)
    for n in range(batch):
        graph = nx.DiGraph()
        for k in range(num_layers):  # node (k, j): position j below layer k + 1
            for i in range(length):
                for j in range(length):
                    graph.add_edge((k + 1, i), (k, j), capacity=capacities[k][n][i][j])
        # one residual network, reset by each call: half the time of building it each time
        residual_net = build_residual_network(graph, "capacity")
        for i in range(length):
            for j in range(length):
                flows[n, i, j] = nx.maximum_flow_value(
                    graph, (num_layers, i), (0, j), flow_func=augment, residual=residual_net
                )
    totals = flows.sum(dim=-1, keepdim=True)
    flows = torch.where(totals > 0, flows / totals.clamp(min=torch.finfo(flows.dtype).tiny), 0.0)
    return flows.to(dtype=layers[0].dtype, device=layers[0].device)
