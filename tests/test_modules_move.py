"""Every module of the package moves all of its tensors with ``.to(device)``.

A tensor kept as a plain attribute (not a parameter or a buffer) stays on the CPU when a
model moves to a GPU, and the first forward pass on CUDA fails. No GPU is needed to catch
that: PyTorch's ``meta`` device stands in for it, and every tensor reachable from a module
must be on it after ``module.to("meta")``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
import torch
from torch import nn

import attention_book
from attention_book import (
    AdditiveAttention,
    DotProductAttention,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    NadarayaWatsonRegression,
    PositionalEncoding,
    RotaryEmbedding,
)

FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "AdditiveAttention": lambda: AdditiveAttention(3, 5, 4),
    "DotProductAttention": DotProductAttention,
    "MultiHeadAttention": lambda: MultiHeadAttention(8, 2, kdim=5, vdim=3),
    "NadarayaWatsonRegression": NadarayaWatsonRegression,
    "PositionalEncoding": lambda: PositionalEncoding(6, max_len=11),
    "LearnedPositionalEmbedding": lambda: LearnedPositionalEmbedding(9, 4),
    "RotaryEmbedding": lambda: RotaryEmbedding(8, max_len=16),
}

#: Modules without any tensor (nothing to move).
STATELESS = {"DotProductAttention"}


def module_classes() -> list[str]:
    return sorted(
        name
        for name in attention_book.__all__
        if inspect.isclass(getattr(attention_book, name))
        and issubclass(getattr(attention_book, name), nn.Module)
    )


def tensors_of(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor a module holds: parameters, buffers and plain attributes."""
    found = {}
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            if isinstance(value, torch.Tensor):
                found[f"{prefix}.{name}"] = value
        found.update({f"{prefix}.{n}": t for n, t in sub.named_parameters(recurse=False)})
        found.update({f"{prefix}.{n}": t for n, t in sub.named_buffers(recurse=False)})
    return found


def test_every_module_class_has_a_factory() -> None:
    assert module_classes() == sorted(FACTORIES), "add the new module to FACTORIES"


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_to_moves_every_tensor(name: str) -> None:
    module = FACTORIES[name]()
    if name in STATELESS:
        assert tensors_of(module) == {}, f"{name} holds tensors now: remove it from STATELESS"
    else:
        assert tensors_of(module), f"{name} holds no tensor: the test would prove nothing"
    moved = module.to("meta")
    left = [key for key, tensor in tensors_of(moved).items() if tensor.device.type != "meta"]
    assert left == [], f"{name}: tensors that .to(device) does not move: {left}"
