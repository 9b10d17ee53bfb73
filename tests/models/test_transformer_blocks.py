"""The Transformer blocks against PyTorch's own layers, with the weights copied across.

PyTorch's masks mean True = *ignore*; ours mean True = may attend. In eval mode under
``no_grad`` PyTorch's encoder layer takes a fused fast path
(``torch._transformer_encoder_layer_fwd``), a different implementation again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book import MultiHeadAttention
from attention_book.models import (
    DecoderOutput,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
)

E, H, FFN = 8, 2, 16
DTYPES = [torch.float32, torch.float64]


def randomise(layer: nn.Module) -> None:
    """Every parameter random: PyTorch starts biases at 0 and norms at 1, which hides bugs."""
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3 + (parameter == 1) * 1.0)


def encoder_layer(
    *,
    batch_first: bool,
    norm_first: bool,
    activation: Literal["relu", "gelu"],
    dtype: torch.dtype,
    dropout: float = 0.0,
    bias: bool = True,
) -> nn.TransformerEncoderLayer:
    layer = nn.TransformerEncoderLayer(
        E,
        H,
        FFN,
        dropout=dropout,
        activation=activation,
        batch_first=batch_first,
        norm_first=norm_first,
        bias=bias,
        layer_norm_eps=1e-4,
        dtype=dtype,
    )
    randomise(layer)
    return layer


def decoder_layer(
    *,
    batch_first: bool,
    norm_first: bool,
    activation: Literal["relu", "gelu"],
    dtype: torch.dtype,
    dropout: float = 0.0,
) -> nn.TransformerDecoderLayer:
    layer = nn.TransformerDecoderLayer(
        E,
        H,
        FFN,
        dropout=dropout,
        activation=activation,
        batch_first=batch_first,
        norm_first=norm_first,
        layer_norm_eps=1e-4,
        dtype=dtype,
    )
    randomise(layer)
    return layer


def batch_first_call(
    layer: nn.TransformerEncoderLayer | nn.TransformerDecoderLayer, *inputs: Tensor, **kwargs: Any
) -> Tensor:
    """Call a PyTorch layer on batch-first inputs whatever its batch_first; return batch first."""
    batch_first = layer.self_attn.batch_first
    if not batch_first:
        inputs = tuple(t.transpose(0, 1) for t in inputs)
    output: Tensor = layer(*inputs, **kwargs)
    return output if batch_first else output.transpose(0, 1)


def padding_mask(lens: Tensor, length: int) -> Tensor:
    """PyTorch's key padding mask, True = ignore: (N,) -> (N, length)."""
    return torch.arange(length) >= lens[:, None]


MODES = ["train", "eval"]


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "seq-first"])
def test_encoder_block_matches_pytorch(
    batch_first: bool,
    norm_first: bool,
    activation: Literal["relu", "gelu"],
    mode: str,
    dtype: torch.dtype,
) -> None:
    # train() with dropout 0; eval() with dropout 0.1, which eval mode must ignore
    dropout = 0.0 if mode == "train" else 0.1
    layer = encoder_layer(
        batch_first=batch_first,
        norm_first=norm_first,
        activation=activation,
        dtype=dtype,
        dropout=dropout,
    ).train(mode == "train")
    block = TransformerEncoderBlock.from_torch(layer)
    assert block.training == (mode == "train")
    assert block.self_attn.q_proj.weight.dtype == dtype
    x = torch.randn(3, 6, E, dtype=dtype)  # (N, L, E)
    lens = torch.tensor([6, 4, 1])
    with torch.set_grad_enabled(mode == "train"):
        expected = batch_first_call(layer, x, src_key_padding_mask=padding_mask(lens, 6))
        output, weights = block(x, valid_lens=lens)
        no_padding = batch_first_call(layer, x)
        assert torch.equal(block(x).output, block(x, valid_lens=torch.full((3,), 6)).output)
        torch.testing.assert_close(block(x).output, no_padding)
    torch.testing.assert_close(output, expected)
    assert weights is not None
    assert weights.shape == (3, H, 6, 6)  # (N, H, L, L)
    assert torch.all(weights[1, :, :, 4:] == 0)
    assert torch.all(weights[2, :, :, 1:] == 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_encoder_eval_parity_goes_through_pytorchs_fast_path(
    dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    fused = torch._transformer_encoder_layer_fwd

    def counting(*args: Any, **kwargs: Any) -> Tensor:
        calls.append(1)
        result: Tensor = fused(*args, **kwargs)
        return result

    monkeypatch.setattr(torch, "_transformer_encoder_layer_fwd", counting)
    layer = encoder_layer(
        batch_first=True, norm_first=False, activation="gelu", dtype=dtype, dropout=0.1
    ).eval()
    block = TransformerEncoderBlock.from_torch(layer)
    x = torch.randn(4, 7, E, dtype=dtype)
    lens = torch.tensor([7, 5, 2, 1])
    with torch.no_grad():
        expected = layer(x, src_key_padding_mask=padding_mask(lens, 7))
        output = block(x, valid_lens=lens).output
    assert calls, "PyTorch did not take its fast path"
    torch.testing.assert_close(output, expected)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_encoder_weights_are_pytorchs_per_head_weights(norm_first: bool) -> None:
    layer = encoder_layer(
        batch_first=True, norm_first=norm_first, activation="relu", dtype=torch.float64
    )
    block = TransformerEncoderBlock.from_torch(layer)
    x = torch.randn(2, 5, E, dtype=torch.float64)
    ignore = torch.rand(5, 5) < 0.4  # PyTorch's attn_mask: True = ignore
    ignore.fill_diagonal_(False)  # every query keeps a key
    attention_input = layer.norm1(x) if norm_first else x
    _, expected = layer.self_attn(
        attention_input, attention_input, attention_input, attn_mask=ignore,
        average_attn_weights=False,
    )  # fmt: skip
    output, weights = block(x, ~ignore)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(output, layer(x, src_mask=ignore))


def test_encoder_is_causal_and_masks_combine_like_pytorch() -> None:
    layer = encoder_layer(batch_first=True, norm_first=True, activation="relu", dtype=torch.float64)
    block = TransformerEncoderBlock.from_torch(layer)
    x = torch.randn(3, 5, E, dtype=torch.float64)
    lens = torch.tensor([5, 3, 2])
    future = torch.ones(5, 5, dtype=torch.bool).triu(1)  # PyTorch's polarity: True = ignore
    expected = layer(x, src_mask=future, src_key_padding_mask=padding_mask(lens, 5), is_causal=True)
    torch.testing.assert_close(block(x, valid_lens=lens, is_causal=True).output, expected)
    explicit = torch.ones(5, 5, dtype=torch.bool).tril()  # True = may attend
    torch.testing.assert_close(block(x, explicit, valid_lens=lens).output, expected)


def test_encoder_without_bias_matches_pytorch() -> None:
    layer = encoder_layer(
        batch_first=True, norm_first=False, activation="relu", dtype=torch.float64, bias=False
    )
    block = TransformerEncoderBlock.from_torch(layer)
    for module in (block.linear1, block.norm1, block.self_attn.q_proj):
        assert dict(module.named_parameters()).keys() == {"weight"}
    x = torch.randn(2, 4, E, dtype=torch.float64)
    torch.testing.assert_close(block(x).output, layer(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch-first", "seq-first"])
def test_decoder_block_matches_pytorch(
    batch_first: bool,
    norm_first: bool,
    activation: Literal["relu", "gelu"],
    mode: str,
    dtype: torch.dtype,
) -> None:
    dropout = 0.0 if mode == "train" else 0.1
    layer = decoder_layer(
        batch_first=batch_first,
        norm_first=norm_first,
        activation=activation,
        dtype=dtype,
        dropout=dropout,
    ).train(mode == "train")
    block = TransformerDecoderBlock.from_torch(layer)
    assert block.training == (mode == "train")
    x = torch.randn(3, 5, E, dtype=dtype)  # (N, T, E)
    memory = torch.randn(3, 7, E, dtype=dtype)  # (N, S, E), S != T
    memory_lens = torch.tensor([7, 2, 5])
    causal = nn.Transformer.generate_square_subsequent_mask(5, dtype=dtype)  # -inf = forbidden
    with torch.set_grad_enabled(mode == "train"):
        expected = batch_first_call(
            layer,
            x,
            memory,
            tgt_mask=causal,
            tgt_is_causal=True,
            memory_key_padding_mask=padding_mask(memory_lens, 7),
        )
        output, self_weights, cross_weights = block(x, memory, memory_valid_lens=memory_lens)
    torch.testing.assert_close(output, expected)
    assert self_weights is not None
    assert cross_weights is not None
    assert self_weights.shape == (3, H, 5, 5)  # (N, H, T, T)
    assert cross_weights.shape == (3, H, 5, 7)  # (N, H, T, S)
    assert torch.all(self_weights.triu(1) == 0)
    assert torch.all(cross_weights[1, :, :, 2:] == 0)
    torch.testing.assert_close(cross_weights.sum(-1), torch.ones(3, H, 5, dtype=dtype))


def test_decoder_weights_and_all_masks_match_pytorch() -> None:
    layer = decoder_layer(
        batch_first=True, norm_first=False, activation="relu", dtype=torch.float64
    )
    block = TransformerDecoderBlock.from_torch(layer)
    assert isinstance(block.cross_attn, MultiHeadAttention)
    x, memory = torch.randn(2, 4, E, dtype=torch.float64), torch.randn(2, 6, E, dtype=torch.float64)
    tgt_lens, memory_lens = torch.tensor([4, 3]), torch.tensor([6, 4])
    memory_ignore = torch.rand(4, 6) < 0.3  # True = ignore
    memory_ignore[:, 0] = False
    future = torch.ones(4, 4, dtype=torch.bool).triu(1)  # True = ignore
    expected = layer(
        x,
        memory,
        tgt_mask=future,
        memory_mask=memory_ignore,
        tgt_key_padding_mask=padding_mask(tgt_lens, 4),
        memory_key_padding_mask=padding_mask(memory_lens, 6),
    )
    result = block(
        x,
        memory,
        valid_lens=tgt_lens,
        memory_mask=~memory_ignore,
        memory_valid_lens=memory_lens,
    )
    assert isinstance(result, DecoderOutput)
    torch.testing.assert_close(result.output, expected)
    # the weights are those of PyTorch's two attentions on the same inputs
    z = layer.norm1(x + layer.self_attn(x, x, x, attn_mask=future,
                                        key_padding_mask=padding_mask(tgt_lens, 4))[0])  # fmt: skip
    _, expected_cross = layer.multihead_attn(
        z, memory, memory, attn_mask=memory_ignore,
        key_padding_mask=padding_mask(memory_lens, 6), average_attn_weights=False,
    )  # fmt: skip
    torch.testing.assert_close(result.cross_weights, expected_cross)
    # is_causal=False and no mask: the target sees every position, also later ones
    unmasked = block(x, memory, is_causal=False)
    torch.testing.assert_close(unmasked.output, layer(x, memory))
    assert unmasked.self_weights is not None
    assert bool((unmasked.self_weights[..., future] > 0).all())


def test_blocks_train_with_dropout_and_are_deterministic_in_eval() -> None:
    block = TransformerEncoderBlock(E, H, FFN, dropout=0.5)
    x = torch.randn(2, 5, E)
    first, second = block(x).output, block(x).output
    assert not torch.allclose(first, second)
    block.eval()
    assert torch.equal(block(x).output, block(x).output)
    decoder = TransformerDecoderBlock(E, H, FFN, dropout=0.5).eval()
    memory = torch.randn(2, 3, E)
    assert torch.equal(decoder(x, memory).output, decoder(x, memory).output)


def test_submodules_have_pytorchs_names() -> None:
    encoder = TransformerEncoderBlock(E, H, FFN)
    assert {"self_attn", "linear1", "linear2", "norm1", "norm2"} <= set(
        dict(encoder.named_children())
    )
    assert isinstance(encoder.self_attn, MultiHeadAttention)
    torch_names = set(nn.TransformerEncoderLayer(E, H, FFN).state_dict())
    # PyTorch packs q, k, v into in_proj_*; everything else has the same name
    ours = {name for name in encoder.state_dict() if not re.search(r"\.[qkv]_proj\.", name)}
    assert ours == {name for name in torch_names if "in_proj" not in name}
    decoder = TransformerDecoderBlock(E, H, FFN, activation="gelu", norm_first=True)
    names = set(dict(decoder.named_children()))
    assert {"self_attn", "cross_attn", "linear1", "linear2", "norm1", "norm2", "norm3"} <= names
    assert "activation='gelu', norm_first=True" in repr(decoder)


def test_gradcheck_in_float64() -> None:
    block = TransformerDecoderBlock(4, 2, 6, norm_first=True).double()
    x = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    lens = torch.tensor([5, 2])
    assert torch.autograd.gradcheck(
        lambda a, b: block(a, b, memory_valid_lens=lens).output, (x, memory)
    )


TORCH_LAYER_ERRORS: list[tuple[Callable[[], object], type[Exception], str]] = [
    (
        lambda: TransformerEncoderBlock.from_torch(
            nn.TransformerEncoderLayer(E, H, FFN, activation=torch.tanh)
        ),
        ValueError,
        "layer must use the activation relu or gelu (exact); got <built-in method tanh",
    ),
    (
        lambda: TransformerDecoderBlock.from_torch(
            nn.TransformerDecoderLayer(E, H, FFN, activation=nn.GELU(approximate="tanh"))
        ),
        ValueError,
        "layer must use the activation relu or gelu (exact); got GELU(approximate='tanh')",
    ),
    (
        lambda: TransformerEncoderBlock.from_torch(nn.TransformerDecoderLayer(E, H, FFN)),  # type: ignore[arg-type]
        TypeError,
        "layer must be an nn.TransformerEncoderLayer; got TransformerDecoderLayer",
    ),
    (
        lambda: TransformerDecoderBlock.from_torch(nn.TransformerEncoderLayer(E, H, FFN)),  # type: ignore[arg-type]
        TypeError,
        "layer must be an nn.TransformerDecoderLayer; got TransformerEncoderLayer",
    ),
]

x8, memory8 = torch.randn(2, 4, E), torch.randn(2, 6, E)
ERRORS: list[tuple[Callable[[], object], type[Exception], str]] = [
    *TORCH_LAYER_ERRORS,
    (
        lambda: TransformerEncoderBlock(E, H, FFN, activation="tanh"),  # type: ignore[arg-type]
        ValueError,
        "activation must be one of 'relu', 'gelu'; got 'tanh'",
    ),
    (
        lambda: TransformerDecoderBlock(E, 3, FFN),
        ValueError,
        "embed_dim must be divisible by num_heads = 3; got embed_dim = 8",
    ),
    (
        lambda: TransformerEncoderBlock(E, H, 0),
        ValueError,
        "ffn_dim must be at least 1; got 0",
    ),
    (
        lambda: TransformerEncoderBlock(E, H, FFN, dropout=1.5),
        ValueError,
        "dropout must lie in [0, 1); got 1.5",
    ),
    (
        lambda: TransformerEncoderBlock(E, H, FFN)(torch.randn(2, 4, 6)),
        ValueError,
        "x must have embed_dim = 8 features (N, L, 8); got shape (2, 4, 6)",
    ),
    (
        lambda: TransformerEncoderBlock(E, H, FFN)(torch.randn(4, E)),
        ValueError,
        "x must have at least 3 dims (N, L, 8); got shape (4, 8)",
    ),
    (
        lambda: TransformerEncoderBlock(E, H, FFN)(torch.ones(2, 4, E, dtype=torch.long)),
        TypeError,
        "x must be a floating-point tensor; got dtype torch.int64",
    ),
    (
        lambda: TransformerDecoderBlock(E, H, FFN)(x8, torch.randn(2, 6, 4)),
        ValueError,
        "memory must have embed_dim = 8 features (N, S, 8); got shape (2, 6, 4)",
    ),
    (
        lambda: TransformerDecoderBlock(E, H, FFN)(x8, torch.randn(3, 6, E)),
        ValueError,
        "memory must have the batch dims of x (N, T, E) = (2, 4, 8); got shape (3, 6, 8)",
    ),
    (
        lambda: TransformerDecoderBlock(E, H, FFN)(
            x8, memory8, memory_valid_lens=torch.tensor([7, 1])
        ),
        ValueError,
        "valid_lens must lie in [0, S] = [0, 6]; got values from 1 to 7",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), ERRORS)
def test_bad_input_is_named(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_relu_and_gelu_are_the_functions_used() -> None:
    for activation, function in (("relu", F.relu), ("gelu", F.gelu)):
        block = TransformerEncoderBlock(E, H, FFN, activation=activation)  # type: ignore[arg-type]
        h = torch.randn(3, E)
        expected = block.linear2(function(block.linear1(h)))
        torch.testing.assert_close(block._feed_forward(h), expected)
