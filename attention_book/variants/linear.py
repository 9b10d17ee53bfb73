r"""Linear attention: a feature map in place of the softmax, the sums over keys taken once.

Softmax attention weighs key ``j`` by :math:`\kappa(\mathbf q_i, \mathbf k_j) =
\exp(\mathbf q_i^\top \mathbf k_j / \sqrt E)`, a kernel, and every query needs its own row of
the ``(L, S)`` matrix. Write a kernel as a dot product of features,
:math:`\kappa(\mathbf q, \mathbf k) \approx \phi(\mathbf q)^\top \phi(\mathbf k)`, and the sum
over keys can be taken once for all queries (Katharopoulos et al. 2020):

.. math::

    \mathbf o_i
    = \frac{\sum_j \phi(\mathbf q_i)^\top \phi(\mathbf k_j)\, \mathbf v_j^\top}
           {\sum_j \phi(\mathbf q_i)^\top \phi(\mathbf k_j)}
    = \frac{\phi(\mathbf q_i)^\top \mathbf S}{\phi(\mathbf q_i)^\top \mathbf z},
    \qquad \mathbf S = \sum_j \phi(\mathbf k_j) \mathbf v_j^\top,
    \quad \mathbf z = \sum_j \phi(\mathbf k_j)

so the work grows like :math:`(L + S) \cdot F \cdot E_v` (``F`` features), linearly in the
length, never like :math:`L \cdot S`. In causal form the sums run over :math:`j \le i`: :func:`linear_attention`
takes them in blocks of 64 positions (cumulative sums of the blocks' :math:`\mathbf S` and
:math:`\mathbf z` for the blocks before, a lower-triangular ``(64, 64)`` product inside the
block), :func:`linear_attention_step` one token at a time, as a recurrence on the state
:math:`(\mathbf S, \mathbf z)`. There is no ``attn_mask``:
an arbitrary ``(L, S)`` mask cannot be applied without building it (a key padding mask can,
by zeroing the features of the padded keys before the sums).

With :func:`elu_feature_map` the kernel is a new one. With random features of the softmax
kernel it is Performer, in :mod:`attention_book.variants.performer`.

Shapes: ``N`` batch (any leading dims ``...``, broadcast between the inputs), ``L`` queries,
``S`` keys and values, ``E`` query/key features, ``Ev`` value features, ``F`` feature-map
features (``m`` random features).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeAlias

import torch  # noqa: F401  (the docstring examples, run as tests, use it)
import torch.nn.functional as F
from torch import Tensor

from attention_book._checks import (
    check_attention_inputs,
    check_callable,
    check_float,
    check_same_dtype,
    fmt_shape,
)

__all__ = [
    "FeatureMap",
    "LinearAttentionState",
    "elu_feature_map",
    "linear_attention",
    "linear_attention_step",
]

#: A feature map ``phi(x) -> Tensor``: ``(..., E)`` to non-negative ``(..., F)``, applied to
#: queries and keys alike.
FeatureMap: TypeAlias = Callable[[Tensor], Tensor]

_SIGNATURE = "phi(x) -> Tensor"
# positions per block of the causal form: its (C, C) triangles cost L * C * (F + Ev), its
# cumulative sums over blocks L / C * F * Ev; C = 64 balances them for F = Ev = 64
_CAUSAL_BLOCK = 64


class LinearAttentionState(NamedTuple):
    r"""The running sums of causal linear attention after the keys seen so far.

    .. math::

        \mathbf S = \sum_{j \le t} \phi(\mathbf k_j)\, \mathbf v_j^\top, \qquad
        \mathbf z = \sum_{j \le t} \phi(\mathbf k_j)

    Attributes:
        kv: ``(..., F, Ev)``, :math:`\mathbf S`.
        k_sum: ``(..., F)``, :math:`\mathbf z`.

    Example:
        >>> state = LinearAttentionState(torch.zeros(2, 3), torch.zeros(2))
        >>> state.kv.shape, state.k_sum.shape
        (torch.Size([2, 3]), torch.Size([2]))
    """

    kv: Tensor
    k_sum: Tensor


def elu_feature_map(x: Tensor) -> Tensor:
    r"""The feature map of Katharopoulos et al. (2020): positive, and the identity plus 1 for ``x > 0``.

    .. math::

        \phi(x) = \operatorname{elu}(x) + 1 =
        \begin{cases} x + 1 & x > 0 \\ e^{x} & x \le 0 \end{cases}

    Args:
        x: ``(..., E)``, any shape.

    Returns:
        ``(..., E)``, every entry positive (in float32, 0 below about ``-17``, where
        :math:`e^x` is lost next to 1).

    Raises:
        TypeError: If ``x`` is not a floating-point tensor.

    Example:
        >>> elu_feature_map(torch.tensor([-1.0, 0.0, 2.0]))
        tensor([0.3679, 1.0000, 3.0000])
    """
    return F.elu(check_float("x", x)) + 1.0


def _sums(phi_q: Tensor, phi_k: Tensor, value: Tensor, *, causal: bool) -> tuple[Tensor, Tensor]:
    r"""Numerator :math:`\phi(q_i)^\top S` ``(..., L, Ev)`` and denominator ``(..., L, 1)``."""
    if not causal:
        kv = phi_k.transpose(-2, -1) @ value  # (..., F, S) @ (..., S, Ev) -> (..., F, Ev)
        k_sum = phi_k.sum(dim=-2, keepdim=True).transpose(-2, -1)  # (..., F, 1)
        return phi_q @ kv, phi_q @ k_sum  # (..., L, F) @ (..., F, Ev | 1) -> (..., L, Ev | 1)
    # Blocks of C positions: the keys of earlier blocks enter through the cumulative sums
    # of the blocks' S and z, the keys of a query's own block through a (C, C) triangle.
    length, size = phi_q.shape[-2], _CAUSAL_BLOCK
    pad = (0, 0, 0, -length % size)  # zero rows at the end: keys with zero features
    q, k, v = (  # (..., L, X) -> (..., B, C, X), B blocks of C positions
        F.pad(t, pad).reshape(*t.shape[:-2], -1, size, t.shape[-1]) for t in (phi_q, phi_k, value)
    )
    kv = k.transpose(-2, -1) @ v  # (..., B, F, C) @ (..., B, C, Ev) -> (..., B, F, Ev)
    kv_before = F.pad(kv.cumsum(dim=-3)[..., :-1, :, :], (0, 0, 0, 0, 1, 0))  # blocks < b
    k_sum = k.sum(dim=-2)  # (..., B, F)
    k_before = F.pad(k_sum.cumsum(dim=-2)[..., :-1, :], (0, 0, 1, 0))[..., None]  # (..., B, F, 1)
    within = (q @ k.transpose(-2, -1)).tril()  # (..., B, C, F) @ (..., B, F, C) -> (..., B, C, C)
    numerator = q @ kv_before + within @ v  # (..., B, C, Ev)
    denominator = q @ k_before + within.sum(dim=-1, keepdim=True)  # (..., B, C, 1)
    return numerator.flatten(-3, -2)[..., :length, :], denominator.flatten(-3, -2)[..., :length, :]


def _check_features(phi_q: Tensor, phi_k: Tensor) -> None:
    """Raise ``ValueError`` unless the query and key features have the same size ``F``."""
    if phi_q.shape[-1] != phi_k.shape[-1]:
        msg = (
            f"feature_map must give queries and keys the same number of features F; got "
            f"{phi_q.shape[-1]} for query and {phi_k.shape[-1]} for key"
        )
        raise ValueError(msg)


def _check_causal(query: Tensor, key: Tensor, causal: bool) -> None:
    """Raise ``ValueError`` for ``causal=True`` with ``L != S``."""
    if causal and query.shape[-2] != key.shape[-2]:
        msg = (
            f"causal needs as many keys as queries (L == S); got L = {query.shape[-2]} "
            f"and S = {key.shape[-2]}"
        )
        raise ValueError(msg)


def _check_eps(eps: float) -> None:
    """Raise ``ValueError`` unless ``eps >= 0``."""
    if not eps >= 0.0:
        msg = f"eps must be at least 0; got {eps}"
        raise ValueError(msg)


def linear_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    feature_map: FeatureMap = elu_feature_map,
    causal: bool = False,
    eps: float = 1e-6,
) -> Tensor:
    r"""Attention with the kernel :math:`\phi(\mathbf q)^\top \phi(\mathbf k)`, in time linear in ``L``.

    .. math::

        \mathbf o_i = \frac{\phi(\mathbf q_i)^\top \sum_j \phi(\mathbf k_j)\, \mathbf v_j^\top}
                           {\phi(\mathbf q_i)^\top \sum_j \phi(\mathbf k_j) + \varepsilon}

    The sums are taken once, over all ``j``. With ``causal=True`` they run over
    :math:`j \le i`, in blocks of 64 positions: the keys of earlier blocks enter through the
    cumulative sums of the blocks' :math:`\mathbf S` and :math:`\mathbf z`, those of the
    query's own block through a lower-triangular ``(64, 64)`` product. No ``(L, S)`` tensor
    is ever built. The result equals the explicit ``(L, S)`` formula ``A = φ(Q) φ(K)ᵀ`` (lower
    triangle when causal), ``A V / (A 1 + eps)``, and running :func:`linear_attention_step`
    over the sequence. There is no ``attn_mask`` (see the module's notes).

    Args:
        query: ``(..., L, E)``.
        key: ``(..., S, E)``.
        value: ``(..., S, Ev)``.
        feature_map: ``phi``, applied to query and key: ``(..., E) -> (..., F)`` with
            non-negative features.
        causal: Query ``i`` sees keys ``0..i`` only; needs ``L == S``.
        eps: Added to the denominator (``0`` or more).

    Returns:
        ``(..., L, Ev)``.

    Raises:
        TypeError: If an input is not floating point, the dtypes differ, or ``feature_map``
            is not callable.
        ValueError: If the shapes do not fit together, the feature map gives queries and
            keys different sizes, ``causal`` comes with ``L != S``, or ``eps`` is negative.

    Example:
        >>> query, key = torch.zeros(1, 3, 2), torch.zeros(1, 3, 2)  # phi = 1 everywhere
        >>> value = torch.tensor([[[3.0], [6.0], [9.0]]])  # (N, S, Ev)
        >>> linear_attention(query, key, value, eps=0.0)[0, :, 0]  # the plain mean
        tensor([6., 6., 6.])
        >>> linear_attention(query, key, value, causal=True, eps=0.0)[0, :, 0]  # running mean
        tensor([3.0000, 4.5000, 6.0000])
    """
    query, key, value, _ = check_attention_inputs(query, key, value)
    check_callable("feature_map", feature_map, _SIGNATURE)
    _check_causal(query, key, causal)
    _check_eps(eps)
    phi_q, phi_k = feature_map(query), feature_map(key)  # (..., L, F), (..., S, F)
    _check_features(phi_q, phi_k)
    numerator, denominator = _sums(phi_q, phi_k, value, causal=causal)
    return numerator / (denominator + eps)  # (..., L, Ev) / (..., L, 1)


def linear_attention_step(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    state: LinearAttentionState | None = None,
    *,
    feature_map: FeatureMap = elu_feature_map,
    eps: float = 1e-6,
) -> tuple[Tensor, LinearAttentionState]:
    r"""One step of causal linear attention as a recurrence: add the new key, read with the query.

    .. math::

        \mathbf S_t = \mathbf S_{t-1} + \phi(\mathbf k_t)\, \mathbf v_t^\top, \quad
        \mathbf z_t = \mathbf z_{t-1} + \phi(\mathbf k_t), \quad
        \mathbf o_t = \frac{\phi(\mathbf q_t)^\top \mathbf S_t}
                           {\phi(\mathbf q_t)^\top \mathbf z_t + \varepsilon}

    The state has a fixed size ``(F, Ev)`` and ``(F,)`` however long the sequence, like the
    hidden state of an RNN. Running this over a sequence, one position at a time, gives
    ``linear_attention(..., causal=True)``.

    Args:
        query: ``(..., 1, E)``, the query at step ``t``.
        key: ``(..., 1, E)``.
        value: ``(..., 1, Ev)``.
        state: :class:`LinearAttentionState` after step ``t - 1``; ``None`` is the empty
            state (zeros).
        feature_map: ``phi``, as in :func:`linear_attention`.
        eps: Added to the denominator (``0`` or more).

    Returns:
        ``output (..., 1, Ev)`` and the :class:`LinearAttentionState` after step ``t``.

    Raises:
        TypeError: If an input or the state is not floating point, the dtypes differ, or
            ``feature_map`` is not callable.
        ValueError: If an input does not hold exactly one position, the shapes do not fit
            together, or the state's shapes do not match the features.

    Example:
        >>> zero, state = torch.zeros(1, 2), None  # (1, E): phi = 1 everywhere
        >>> for v in [3.0, 6.0, 9.0]:
        ...     output, state = linear_attention_step(
        ...         zero, zero, torch.tensor([[v]]), state, eps=0.0
        ...     )
        ...     print(output.item())
        3.0
        4.5
        6.0
    """
    query, key, value, _ = check_attention_inputs(query, key, value)
    check_callable("feature_map", feature_map, _SIGNATURE)
    _check_eps(eps)
    for name, tensor in (("query", query), ("key", key)):
        if tensor.shape[-2] != 1:
            msg = f"{name} must hold one position (..., 1, E); got {fmt_shape(tensor.shape)}"
            raise ValueError(msg)
    phi_q, phi_k = feature_map(query), feature_map(key)  # (..., 1, F)
    _check_features(phi_q, phi_k)
    kv = phi_k.transpose(-2, -1) @ value  # (..., F, 1) @ (..., 1, Ev) -> (..., F, Ev)
    k_sum = phi_k.squeeze(-2)  # (..., F)
    if state is not None:
        _check_state(state, kv, k_sum)
        kv, k_sum = state.kv + kv, state.k_sum + k_sum
    numerator = phi_q @ kv  # (..., 1, F) @ (..., F, Ev) -> (..., 1, Ev)
    denominator = phi_q @ k_sum[..., :, None]  # (..., 1, F) @ (..., F, 1) -> (..., 1, 1)
    return numerator / (denominator + eps), LinearAttentionState(kv, k_sum)


def _check_state(state: object, kv: Tensor, k_sum: Tensor) -> None:
    """Check a state against this step's ``kv (..., F, Ev)`` and ``k_sum (..., F)``."""
    if not isinstance(state, tuple) or len(state) != 2:
        msg = f"state must be a LinearAttentionState(kv, k_sum) or None; got {type(state).__name__}"
        raise TypeError(msg)
    state_kv, state_k = check_float("state.kv", state[0]), check_float("state.k_sum", state[1])
    check_same_dtype("state.kv", state_kv, "query", kv)
    check_same_dtype("state.k_sum", state_k, "query", k_sum)
    features, value_features = kv.shape[-2:]
    if state_kv.ndim < 2 or state_kv.shape[-2:] != kv.shape[-2:]:
        msg = (
            f"state.kv must have shape (..., F, Ev) = (..., {features}, {value_features}); "
            f"got {fmt_shape(state_kv.shape)}"
        )
        raise ValueError(msg)
    if state_k.ndim < 1 or state_k.shape[-1] != features:
        msg = f"state.k_sum must have shape (..., F) = (..., {features}); got {fmt_shape(state_k.shape)}"
        raise ValueError(msg)
