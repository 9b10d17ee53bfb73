"""Private validation helpers: one clear message per mistake, raised before any computation.

Every message names the argument, what was expected (with the numbers the other inputs
imply) and what was received, for example
``attn_mask must broadcast to (N, H, L, S) = (2, 4, 5, 7); got (2, 5, 5)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def fmt_shape(shape: Sequence[int]) -> str:
    """Format a shape as ``(2, 4, 5)`` (a 1-tuple as ``(2,)``)."""
    return str(tuple(int(size) for size in shape))


def scores_legend(ndim: int) -> str:
    """Name the dims of a scores tensor with ``ndim`` dims: ``(N, H, L, S)``, ``(..., L, S)``."""
    return {2: "(L, S)", 3: "(N, L, S)", 4: "(N, H, L, S)"}.get(ndim, "(..., L, S)")


def check_tensor(name: str, value: object) -> Tensor:
    """Raise ``TypeError`` unless ``value`` is a tensor; return it."""
    if not isinstance(value, Tensor):
        msg = f"{name} must be a torch.Tensor; got {type(value).__name__}"
        raise TypeError(msg)
    return value


def check_float(name: str, tensor: object) -> Tensor:
    """Raise ``TypeError`` unless ``tensor`` is a floating-point tensor; return it."""
    checked = check_tensor(name, tensor)
    if not checked.is_floating_point():
        msg = f"{name} must be a floating-point tensor; got dtype {checked.dtype}"
        raise TypeError(msg)
    return checked


def check_same_dtype(name: str, tensor: Tensor, ref_name: str, ref: Tensor) -> None:
    """Raise ``TypeError`` unless ``tensor`` has the dtype of ``ref``."""
    if tensor.dtype != ref.dtype:
        msg = f"{name} must have the dtype of {ref_name} ({ref.dtype}); got {tensor.dtype}"
        raise TypeError(msg)


def check_ndim(name: str, tensor: Tensor, min_ndim: int, legend: str) -> None:
    """Raise ``ValueError`` unless ``tensor`` has at least ``min_ndim`` dims."""
    if tensor.ndim < min_ndim:
        msg = f"{name} must have at least {min_ndim} dims {legend}; got shape {fmt_shape(tensor.shape)}"
        raise ValueError(msg)


def check_int(name: str, value: object, *, minimum: int) -> int:
    """Raise unless ``value`` is an ``int`` (not a bool) of at least ``minimum``; return it."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be an int; got {type(value).__name__}"
        raise TypeError(msg)
    if value < minimum:
        msg = f"{name} must be at least {minimum}; got {value}"
        raise ValueError(msg)
    return value


def check_probability(name: str, value: float) -> None:
    """Raise ``ValueError`` unless ``0 <= value < 1``."""
    if not 0.0 <= value < 1.0:
        msg = f"{name} must lie in [0, 1); got {value}"
        raise ValueError(msg)


def check_bool_mask(attn_mask: object, scores_shape: Sequence[int]) -> Tensor:
    """Check a boolean mask that must broadcast to ``scores_shape``; return it."""
    mask = check_tensor("attn_mask", attn_mask)
    if mask.dtype != torch.bool:
        msg = f"attn_mask must be a boolean tensor (True = may attend); got dtype {mask.dtype}"
        raise TypeError(msg)
    target = tuple(scores_shape)
    fits = mask.ndim <= len(target) and all(
        m in (1, t) for m, t in zip(reversed(mask.shape), reversed(target), strict=False)
    )
    if not fits:
        msg = (
            f"attn_mask must broadcast to {scores_legend(len(target))} = {fmt_shape(target)}; "
            f"got {fmt_shape(mask.shape)}"
        )
        raise ValueError(msg)
    return mask


def check_valid_lens(
    valid_lens: object, num_keys: int, *, batch_size: int | None, num_queries: int | None
) -> Tensor:
    """Check integer ``valid_lens`` of shape ``(N,)`` or ``(N, L)`` with values in ``[0, S]``.

    ``batch_size`` or ``num_queries`` of ``None`` means "any size".
    """
    lens = check_tensor("valid_lens", valid_lens)
    if lens.is_floating_point() or lens.is_complex() or lens.dtype == torch.bool:
        msg = f"valid_lens must be an integer tensor of key counts; got dtype {lens.dtype}"
        raise TypeError(msg)
    n = "N" if batch_size is None else str(batch_size)
    q = "L" if num_queries is None else str(num_queries)
    shape_ok = lens.ndim in (1, 2) and batch_size in (None, lens.shape[0])
    if lens.ndim == 2:
        shape_ok = shape_ok and num_queries in (None, lens.shape[1])
    if not shape_ok:
        msg = (
            f"valid_lens must have shape (N,) = ({n},) or (N, L) = ({n}, {q}); "
            f"got {fmt_shape(lens.shape)}"
        )
        raise ValueError(msg)
    if lens.numel() > 0:
        low, high = int(lens.min()), int(lens.max())
        if low < 0 or high > num_keys:
            msg = (
                f"valid_lens must lie in [0, S] = [0, {num_keys}]; got values from {low} to {high}"
            )
            raise ValueError(msg)
    return lens


def check_attention_inputs(
    query: object, key: object, value: object, *, match_features: bool = True
) -> tuple[Tensor, Tensor, Tensor, tuple[int, ...]]:
    """Check ``query (..., L, E)``, ``key (..., S, E)``, ``value (..., S, Ev)``.

    Returns the three tensors and their broadcast batch shape ``...``. With
    ``match_features=False`` the query and key feature sizes may differ (additive attention).
    """
    q = check_float("query", query)
    k = check_float("key", key)
    v = check_float("value", value)
    check_same_dtype("key", k, "query", q)
    check_same_dtype("value", v, "query", q)
    check_ndim("query", q, 2, "(..., L, E)")
    check_ndim("key", k, 2, "(..., S, E)")
    check_ndim("value", v, 2, "(..., S, Ev)")
    if match_features and k.shape[-1] != q.shape[-1]:
        msg = (
            f"key must have E = {q.shape[-1]} features like query (..., L, E) = "
            f"{fmt_shape(q.shape)}; got key of shape {fmt_shape(k.shape)}"
        )
        raise ValueError(msg)
    if v.shape[-2] != k.shape[-2]:
        msg = (
            f"value must have S = {k.shape[-2]} rows like key (..., S, E) = "
            f"{fmt_shape(k.shape)}; got value of shape {fmt_shape(v.shape)}"
        )
        raise ValueError(msg)
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])  # type: ignore[no-untyped-call]
    except RuntimeError:
        msg = (
            "query, key and value must have batch dims (...) that broadcast together; got "
            f"{fmt_shape(q.shape[:-2])}, {fmt_shape(k.shape[:-2])} and {fmt_shape(v.shape[:-2])}"
        )
        raise ValueError(msg) from None
    return q, k, v, tuple(batch)


def check_token_ids(name: str, ids: object, vocab_size: int, legend: str) -> Tensor:
    """Check an integer tensor of token ids ``(N, L)`` with values in ``[0, vocab_size)``."""
    tokens = check_tensor(name, ids)
    if tokens.is_floating_point() or tokens.is_complex() or tokens.dtype == torch.bool:
        msg = f"{name} must be an integer tensor of token ids; got dtype {tokens.dtype}"
        raise TypeError(msg)
    if tokens.ndim != 2 or tokens.shape[1] == 0:
        msg = f"{name} must have shape {legend} with at least one column; got {fmt_shape(tokens.shape)}"
        raise ValueError(msg)
    if tokens.numel() > 0:
        low, high = int(tokens.min()), int(tokens.max())
        if low < 0 or high >= vocab_size:
            msg = (
                f"{name} must hold token ids in [0, vocab_size) = [0, {vocab_size}); "
                f"got values from {low} to {high}"
            )
            raise ValueError(msg)
    return tokens


def check_lengths(name: str, lens: object, batch_size: int, max_len: int) -> Tensor:
    """Check integer lengths ``(N,)`` with values in ``[1, max_len]``."""
    lengths = check_tensor(name, lens)
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        msg = f"{name} must be an integer tensor of lengths; got dtype {lengths.dtype}"
        raise TypeError(msg)
    if lengths.shape != (batch_size,):
        msg = f"{name} must have shape (N,) = ({batch_size},); got {fmt_shape(lengths.shape)}"
        raise ValueError(msg)
    if lengths.numel() > 0:
        low, high = int(lengths.min()), int(lengths.max())
        if low < 1 or high > max_len:
            msg = f"{name} must lie in [1, {max_len}]; got values from {low} to {high}"
            raise ValueError(msg)
    return lengths


def check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices`` (a mode's ``Literal``)."""
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        msg = f"{name} must be one of {listed}; got {value!r}"
        raise ValueError(msg)


# --- attention_book.variants.selection, .hard and .pick_one (helper B) ---


def check_number(name: str, value: object) -> float:
    """Raise ``TypeError`` unless ``value`` is a real number (an ``int`` or ``float``, not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name} must be a number; got {type(value).__name__}"
        raise TypeError(msg)
    return float(value)


def check_positive(name: str, value: object) -> float:
    """Raise unless ``value`` is a real number (not a bool) greater than 0; return it."""
    number = check_number(name, value)
    if not number > 0:
        msg = f"{name} must be positive; got {value}"
        raise ValueError(msg)
    return number


def check_scores_value(scores: object, value: object) -> tuple[Tensor, Tensor]:
    """Check ``scores (..., L, S)`` and ``value (..., S, Ev)`` whose batch dims broadcast."""
    s = check_float("scores", scores)
    v = check_float("value", value)
    check_same_dtype("value", v, "scores", s)
    check_ndim("scores", s, 2, "(..., L, S)")
    check_ndim("value", v, 2, "(..., S, Ev)")
    if v.shape[-2] != s.shape[-1]:
        msg = (
            f"value must have S = {s.shape[-1]} rows like scores (..., L, S) = "
            f"{fmt_shape(s.shape)}; got value of shape {fmt_shape(v.shape)}"
        )
        raise ValueError(msg)
    try:
        torch.broadcast_shapes(s.shape[:-2], v.shape[:-2])  # type: ignore[no-untyped-call]
    except RuntimeError:
        msg = (
            "scores and value must have batch dims (...) that broadcast together; got "
            f"{fmt_shape(s.shape[:-2])} and {fmt_shape(v.shape[:-2])}"
        )
        raise ValueError(msg) from None
    return s, v


def check_dim(name: str, dim: object, ndim: int) -> int:
    """Raise unless ``dim`` is an int naming one of ``ndim`` dims (negative counts from the end)."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        msg = f"{name} must be an int; got {type(dim).__name__}"
        raise TypeError(msg)
    if not -ndim <= dim < ndim:
        msg = f"{name} must lie in [{-ndim}, {ndim - 1}] for a tensor with {ndim} dims; got {dim}"
        raise ValueError(msg)
    return dim


def check_broadcasts_to(name: str, tensor: Tensor, shape: Sequence[int], legend: str) -> None:
    """Raise ``ValueError`` unless ``tensor`` broadcasts to ``shape`` (named by ``legend``)."""
    target = tuple(shape)
    fits = tensor.ndim <= len(target) and all(
        t_size in (1, s_size)
        for t_size, s_size in zip(reversed(tensor.shape), reversed(target), strict=False)
    )
    if not fits:
        msg = f"{name} must broadcast to {legend} = {fmt_shape(target)}; got {fmt_shape(tensor.shape)}"
        raise ValueError(msg)


# --- attention_book.variants.patterns and .reach (helper A) ---


def check_at_most(name: str, value: int, maximum: int, legend: str) -> None:
    """Raise ``ValueError`` if ``value`` exceeds ``maximum``, the value of ``legend``."""
    if value > maximum:
        msg = f"{name} must be at most {legend} = {maximum}; got {value}"
        raise ValueError(msg)


def check_callable(name: str, value: object, signature: str) -> None:
    """Raise ``TypeError`` unless ``value`` is callable (``signature`` says how it is called)."""
    if not callable(value):
        msg = f"{name} must be a callable {signature}; got {type(value).__name__}"
        raise TypeError(msg)


def check_exact_ndim(name: str, tensor: Tensor, ndim: int, legend: str) -> None:
    """Raise ``ValueError`` unless ``tensor`` has exactly ``ndim`` dims, named by ``legend``."""
    if tensor.ndim != ndim:
        msg = f"{name} must have {ndim} dims {legend}; got shape {fmt_shape(tensor.shape)}"
        raise ValueError(msg)


def check_square_bool_mask(name: str, mask: object) -> Tensor:
    """Check a boolean ``(L, L)`` mask (True = query i may read key j); return it."""
    checked = check_tensor(name, mask)
    if checked.dtype != torch.bool:
        msg = f"{name} must be a boolean tensor (True = may attend); got dtype {checked.dtype}"
        raise TypeError(msg)
    if checked.ndim != 2 or checked.shape[0] != checked.shape[1]:
        msg = f"{name} must be square (L, L); got {fmt_shape(checked.shape)}"
        raise ValueError(msg)
    return checked


def check_position(name: str, value: object, size: int) -> int:
    """Check a position in ``[-size, size)`` (negative counts from the end); return it >= 0."""
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be an int; got {type(value).__name__}"
        raise TypeError(msg)
    if not -size <= value < size:
        msg = f"{name} must lie in [-{size}, {size - 1}] for {size} positions; got {value}"
        raise ValueError(msg)
    return value % size


# --- attention_book.variants.adaptive and .dynamic (helper D) ---


def check_unit_interval(name: str, value: object) -> float:
    """Raise unless ``value`` is a real number (not a bool) in ``[0, 1]``; return it."""
    number = check_number(name, value)
    if not 0.0 <= number <= 1.0:
        msg = f"{name} must lie in [0, 1]; got {value}"
        raise ValueError(msg)
    return number


def check_divisible(name: str, value: int, divisor_name: str, divisor: int) -> None:
    """Raise ``ValueError`` unless ``divisor`` divides ``value``."""
    if value % divisor != 0:
        msg = f"{name} must be divisible by {divisor_name} = {divisor}; got {name} = {value}"
        raise ValueError(msg)


def check_instance(name: str, value: object, kind: type) -> None:
    """Raise ``TypeError`` unless ``value`` is an instance of ``kind``."""
    if not isinstance(value, kind):
        article = "an" if kind.__name__[0] in "AEIOU" else "a"
        msg = f"{name} must be {article} {kind.__name__}; got {type(value).__name__}"
        raise TypeError(msg)


def check_non_negative(name: str, value: object) -> float:
    """Raise unless ``value`` is a real number (not a bool) of at least 0; return it."""
    number = check_number(name, value)
    if not number >= 0:
        msg = f"{name} must be at least 0; got {value}"
        raise ValueError(msg)
    return number


def check_test_split(test_fraction: object, num_samples: int, unit: str = "example") -> int:
    """Return how many of ``num_samples`` the last ``test_fraction`` holds out for testing.

    Raise unless ``test_fraction`` is a number in ``[0, 1]`` whose rounded share leaves at
    least one training and one test ``unit`` (``"example"``, ``"sequence"``, ...).
    """
    fraction = check_unit_interval("test_fraction", test_fraction)
    num_test = round(fraction * num_samples)
    if not 0 < num_test < num_samples:
        msg = (
            f"test_fraction must leave at least one training and one test {unit} of "
            f"N = {num_samples}; got {test_fraction} ({num_test} test {unit}s)"
        )
        raise ValueError(msg)
    return num_test
