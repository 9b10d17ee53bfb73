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
import attention_book.interpret
import attention_book.models
import attention_book.variants
from attention_book import (
    AdditiveAttention,
    DotProductAttention,
    LearnedPositionalEmbedding,
    MultiHeadAttention,
    NadarayaWatsonRegression,
    PositionalEncoding,
    RotaryEmbedding,
)
from attention_book.models import (
    AttentionDecoder,
    Seq2Seq,
    Seq2SeqEncoder,
    Transformer,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
)
from attention_book.variants import (
    AdaptiveSpan,
    DynamicConv,
    ImageTower,
    LocalAttention,
    PatchEmbedding,
    PickOneModel,
    SpanModel,
    TextToPatchModel,
    TextTower,
)

#: The namespaces whose ``__all__`` is public: the top level and each subpackage.
NAMESPACES = (
    attention_book,
    attention_book.models,
    attention_book.variants,
    attention_book.interpret,
)

FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "AdditiveAttention": lambda: AdditiveAttention(3, 5, 4),
    "DotProductAttention": DotProductAttention,
    "MultiHeadAttention": lambda: MultiHeadAttention(8, 2, kdim=5, vdim=3),
    "NadarayaWatsonRegression": NadarayaWatsonRegression,
    "PositionalEncoding": lambda: PositionalEncoding(6, max_len=11),
    "LearnedPositionalEmbedding": lambda: LearnedPositionalEmbedding(9, 4),
    "RotaryEmbedding": lambda: RotaryEmbedding(8, max_len=16),
    # attention_book.models
    "AttentionDecoder": lambda: AttentionDecoder(7, 4, 6, encoder_size=5),
    "Seq2Seq": lambda: Seq2Seq(Seq2SeqEncoder(5, 4, 3), AttentionDecoder(7, 4, 6, encoder_size=6)),
    "Seq2SeqEncoder": lambda: Seq2SeqEncoder(5, 4, 3),
    "Transformer": lambda: Transformer(5, 7, embed_dim=8, num_heads=2, ffn_dim=12, max_len=9),
    "TransformerDecoderBlock": lambda: TransformerDecoderBlock(8, 2, 12),
    "TransformerEncoderBlock": lambda: TransformerEncoderBlock(8, 2, 12),
    # attention_book.variants
    "AdaptiveSpan": lambda: AdaptiveSpan(2, 16, ramp=4),
    "DynamicConv": lambda: DynamicConv(8, 3, 2),
    "ImageTower": lambda: ImageTower(8, 4, 6),
    "LocalAttention": lambda: LocalAttention(4, 6, half_window=2),
    "PatchEmbedding": lambda: PatchEmbedding(4, 3, 6),
    "PickOneModel": lambda: PickOneModel(6, 5),
    "SpanModel": lambda: SpanModel(5, 2, 8),
    "TextToPatchModel": lambda: TextToPatchModel(9, 8, 4),
    "TextTower": lambda: TextTower(9, 6),
}

#: Modules without any tensor (nothing to move).
STATELESS = {"DotProductAttention"}


def module_classes() -> list[str]:
    return sorted(
        name
        for namespace in NAMESPACES
        for name in namespace.__all__
        if inspect.isclass(getattr(namespace, name))
        and issubclass(getattr(namespace, name), nn.Module)
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
