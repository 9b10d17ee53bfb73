"""Bad input gets a clear error that names the argument, the expectation and what came."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

from attention_book import (
    AdditiveAttention,
    DotProductAttention,
    MultiHeadAttention,
    NadarayaWatsonRegression,
    PositionalEncoding,
    causal_mask,
    kernel_regression_data,
    leave_one_out,
    masked_softmax,
    nadaraya_watson,
    scaled_dot_product_attention,
    sinusoidal_positions,
    train_nadaraya_watson,
    true_function,
    valid_lens_to_mask,
)

q, k, v = torch.randn(2, 5, 4), torch.randn(2, 7, 4), torch.randn(2, 7, 3)  # (N, L|S, E|Ev)
q4, k4, v4 = torch.randn(2, 4, 5, 4), torch.randn(2, 4, 7, 4), torch.randn(2, 4, 7, 3)

CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    # scaled_dot_product_attention: shapes
    (
        "query/key features differ",
        lambda: scaled_dot_product_attention(q, torch.randn(2, 7, 3), v),
        ValueError,
        "key must have E = 4 features like query (..., L, E) = (2, 5, 4); got key of shape (2, 7, 3)",
    ),
    (
        "key/value lengths differ",
        lambda: scaled_dot_product_attention(q, k, torch.randn(2, 6, 3)),
        ValueError,
        "value must have S = 7 rows like key (..., S, E) = (2, 7, 4); got value of shape (2, 6, 3)",
    ),
    (
        "query 1-D",
        lambda: scaled_dot_product_attention(torch.randn(4), k, v),
        ValueError,
        "query must have at least 2 dims (..., L, E); got shape (4,)",
    ),
    (
        "batch dims",
        lambda: scaled_dot_product_attention(torch.randn(3, 5, 4), k, v),
        ValueError,
        "query, key and value must have batch dims (...) that broadcast together; got (3,), (2,) and (2,)",
    ),
    (
        "mask does not broadcast",
        lambda: scaled_dot_product_attention(q4, k4, v4, torch.ones(2, 5, 5, dtype=torch.bool)),
        ValueError,
        "attn_mask must broadcast to (N, H, L, S) = (2, 4, 5, 7); got (2, 5, 5)",
    ),
    (
        "mask with too many dims",
        lambda: scaled_dot_product_attention(q, k, v, torch.ones(1, 2, 5, 7, dtype=torch.bool)),
        ValueError,
        "attn_mask must broadcast to (N, L, S) = (2, 5, 7); got (1, 2, 5, 7)",
    ),
    (
        "float mask",
        lambda: scaled_dot_product_attention(q, k, v, torch.zeros(5, 7)),
        TypeError,
        "attn_mask must be a boolean tensor (True = may attend); got dtype torch.float32",
    ),
    (
        "integer query",
        lambda: scaled_dot_product_attention(torch.ones(2, 5, 4, dtype=torch.int64), k, v),
        TypeError,
        "query must be a floating-point tensor; got dtype torch.int64",
    ),
    (
        "bool value",
        lambda: scaled_dot_product_attention(q, k, torch.ones(2, 7, 3, dtype=torch.bool)),
        TypeError,
        "value must be a floating-point tensor; got dtype torch.bool",
    ),
    (
        "dtypes differ",
        lambda: scaled_dot_product_attention(q, k.double(), v),
        TypeError,
        "key must have the dtype of query (torch.float32); got torch.float64",
    ),
    (
        "not a tensor",
        lambda: scaled_dot_product_attention(q.tolist(), k, v),  # type: ignore[arg-type]
        TypeError,
        "query must be a torch.Tensor; got list",
    ),
    (
        "dropout_p",
        lambda: scaled_dot_product_attention(q, k, v, dropout_p=1.5),
        ValueError,
        "dropout_p must lie in [0, 1); got 1.5",
    ),
    # valid_lens
    (
        "valid_lens shape",
        lambda: scaled_dot_product_attention(q, k, v, valid_lens=torch.tensor([1, 2, 3])),
        ValueError,
        "valid_lens must have shape (N,) = (2,) or (N, L) = (2, 5); got (3,)",
    ),
    (
        "valid_lens per query shape",
        lambda: scaled_dot_product_attention(
            q4, k4, v4, valid_lens=torch.ones(2, 4, dtype=torch.int64)
        ),
        ValueError,
        "valid_lens must have shape (N,) = (2,) or (N, L) = (2, 5); got (2, 4)",
    ),
    (
        "valid_lens too large",
        lambda: scaled_dot_product_attention(q, k, v, valid_lens=torch.tensor([0, 8])),
        ValueError,
        "valid_lens must lie in [0, S] = [0, 7]; got values from 0 to 8",
    ),
    (
        "valid_lens negative",
        lambda: masked_softmax(torch.zeros(2, 3, 4), valid_lens=torch.tensor([-1, 2])),
        ValueError,
        "valid_lens must lie in [0, S] = [0, 4]; got values from -1 to 2",
    ),
    (
        "valid_lens float",
        lambda: scaled_dot_product_attention(q, k, v, valid_lens=torch.tensor([1.0, 2.0])),
        TypeError,
        "valid_lens must be an integer tensor of key counts; got dtype torch.float32",
    ),
    (
        "valid_lens without batch",
        lambda: masked_softmax(torch.zeros(3, 4), valid_lens=torch.tensor([1, 2, 3])),
        ValueError,
        "valid_lens needs a batch dim: scores of shape (N, ..., L, S); got scores of shape (3, 4)",
    ),
    # masked_softmax, masks
    (
        "integer scores",
        lambda: masked_softmax(torch.ones(2, 3, dtype=torch.int32)),
        TypeError,
        "scores must be a floating-point tensor; got dtype torch.int32",
    ),
    (
        "0-dim scores",
        lambda: masked_softmax(torch.tensor(1.0)),
        ValueError,
        "scores must have at least 1 dim (..., S); got a 0-dim tensor",
    ),
    (
        "valid_lens_to_mask 3-D",
        lambda: valid_lens_to_mask(torch.ones(2, 3, 4, dtype=torch.int64), 5),
        ValueError,
        "valid_lens must have shape (N,) = (N,) or (N, L) = (N, L); got (2, 3, 4)",
    ),
    (
        "valid_lens_to_mask num_queries",
        lambda: valid_lens_to_mask(torch.ones(2, 3, dtype=torch.int64), 5, num_queries=4),
        ValueError,
        "valid_lens must have shape (N,) = (N,) or (N, L) = (N, 4); got (2, 3)",
    ),
    (
        "valid_lens_to_mask num_keys",
        lambda: valid_lens_to_mask(torch.tensor([3]), -1),
        ValueError,
        "num_keys must be at least 0; got -1",
    ),
    (
        "valid_lens_to_mask num_queries type",
        lambda: valid_lens_to_mask(torch.tensor([3]), 4, num_queries=2.0),  # type: ignore[arg-type]
        TypeError,
        "num_queries must be an int; got float",
    ),
    (
        "causal_mask negative",
        lambda: causal_mask(-1),
        ValueError,
        "num_queries must be at least 0; got -1",
    ),
    (
        "causal_mask bool",
        lambda: causal_mask(3, True),
        TypeError,
        "num_keys must be an int; got bool",
    ),
    # modules
    (
        "num_heads < 1",
        lambda: MultiHeadAttention(8, 0),
        ValueError,
        "num_heads must be at least 1; got 0",
    ),
    (
        "num_heads divides",
        lambda: MultiHeadAttention(8, 3),
        ValueError,
        "embed_dim must be divisible by num_heads = 3; got embed_dim = 8",
    ),
    (
        "num_heads type",
        lambda: MultiHeadAttention(8, 2.0),  # type: ignore[arg-type]
        TypeError,
        "num_heads must be an int; got float",
    ),
    (
        "kdim",
        lambda: MultiHeadAttention(8, 2, kdim=0),
        ValueError,
        "kdim must be at least 1; got 0",
    ),
    (
        "MHA dropout",
        lambda: MultiHeadAttention(8, 2, dropout=-0.1),
        ValueError,
        "dropout must lie in [0, 1); got -0.1",
    ),
    (
        "MHA query features",
        lambda: MultiHeadAttention(8, 2)(
            torch.randn(2, 5, 7), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
        ),
        ValueError,
        "query must have embed_dim = 8 features (N, L, 8); got shape (2, 5, 7)",
    ),
    (
        "MHA key features",
        lambda: MultiHeadAttention(8, 2, kdim=3)(
            torch.randn(2, 5, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
        ),
        ValueError,
        "key must have kdim = 3 features (N, S, 3); got shape (2, 6, 8)",
    ),
    (
        "MHA value features",
        lambda: MultiHeadAttention(8, 2, vdim=5)(
            torch.randn(2, 5, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
        ),
        ValueError,
        "value must have vdim = 5 features (N, S, 5); got shape (2, 6, 8)",
    ),
    (
        "MHA unbatched",
        lambda: MultiHeadAttention(8, 2)(torch.randn(5, 8), torch.randn(6, 8), torch.randn(6, 8)),
        ValueError,
        "query must have at least 3 dims (N, L, E); got shape (5, 8)",
    ),
    (
        "MHA mask",
        lambda: MultiHeadAttention(8, 2)(
            torch.randn(3, 5, 8),
            torch.randn(3, 6, 8),
            torch.randn(3, 6, 8),
            torch.ones(2, 5, 6, dtype=torch.bool),
        ),
        ValueError,
        (
            "attn_mask with 3 dims is a mask per batch row and must broadcast to "
            "(N, L, S) = (3, 5, 6); got (2, 5, 6)"
        ),
    ),
    (
        "MHA mask per head",
        lambda: MultiHeadAttention(8, 2)(
            torch.randn(3, 5, 8),
            torch.randn(3, 6, 8),
            torch.randn(3, 6, 8),
            torch.ones(3, 3, 5, 6, dtype=torch.bool),
        ),
        ValueError,
        "attn_mask must broadcast to (N, H, L, S) = (3, 2, 5, 6); got (3, 3, 5, 6)",
    ),
    (
        "additive query size",
        lambda: AdditiveAttention(3, 4, 5)(
            torch.randn(2, 5, 2), torch.randn(2, 6, 4), torch.randn(2, 6, 1)
        ),
        ValueError,
        "query must have query_size = 3 features (..., L, 3); got shape (2, 5, 2)",
    ),
    (
        "additive key size",
        lambda: AdditiveAttention(3, 4, 5)(
            torch.randn(2, 5, 3), torch.randn(2, 6, 2), torch.randn(2, 6, 1)
        ),
        ValueError,
        "key must have key_size = 4 features (..., S, 4); got shape (2, 6, 2)",
    ),
    (
        "additive num_hiddens",
        lambda: AdditiveAttention(3, 4, 0),
        ValueError,
        "num_hiddens must be at least 1; got 0",
    ),
    (
        "dot-product dropout",
        lambda: DotProductAttention(1.0),
        ValueError,
        "dropout must lie in [0, 1); got 1.0",
    ),
    # positional encoding
    (
        "L > max_len",
        lambda: PositionalEncoding(4, max_len=3)(torch.zeros(1, 4, 4)),
        ValueError,
        "x must have at most max_len = 3 positions (N, L, 4); got L = 4",
    ),
    (
        "positional dim",
        lambda: PositionalEncoding(4)(torch.zeros(1, 4, 5)),
        ValueError,
        "x must have dim = 4 features (N, L, 4); got shape (1, 4, 5)",
    ),
    (
        "positional 1-D",
        lambda: PositionalEncoding(4)(torch.zeros(4)),
        ValueError,
        "x must have at least 2 dims (N, L, 4); got shape (4,)",
    ),
    (
        "positional integer",
        lambda: PositionalEncoding(4)(torch.zeros(1, 2, 4, dtype=torch.int64)),
        TypeError,
        "x must be a floating-point tensor; got dtype torch.int64",
    ),
    (
        "sinusoidal negative",
        lambda: sinusoidal_positions(-2, 4),
        ValueError,
        "num_positions must be at least 0; got -2",
    ),
    # pooling
    (
        "bandwidth zero",
        lambda: nadaraya_watson(torch.zeros(3), torch.zeros(4), torch.zeros(4), bandwidth=0.0),
        ValueError,
        "bandwidth must be positive; got 0.0",
    ),
    (
        "bandwidth negative",
        lambda: nadaraya_watson(torch.zeros(3), torch.zeros(4), torch.zeros(4), bandwidth=-1),
        ValueError,
        "bandwidth must be positive; got -1",
    ),
    (
        "unknown kernel",
        lambda: nadaraya_watson(
            torch.zeros(3),
            torch.zeros(4),
            torch.zeros(4),
            kernel="epanechnikow",  # type: ignore[arg-type]
        ),
        ValueError,
        "kernel must be one of 'gaussian', 'boxcar', 'epanechnikov', 'triangular' or a callable; got 'epanechnikow'",
    ),
    (
        "pooling 2-D query",
        lambda: nadaraya_watson(torch.zeros(3, 1), torch.zeros(4), torch.zeros(4)),
        ValueError,
        "query and key must be 1-D, (L,) and (S,); got query of shape (3, 1) and key of shape (4,)",
    ),
    (
        "pooling value length",
        lambda: nadaraya_watson(torch.zeros(3), torch.zeros(4), torch.zeros(5, 2)),
        ValueError,
        "value must have shape (S,) = (4,) or (S, Ev) = (4, Ev); got (5, 2)",
    ),
    (
        "pooling integer key",
        lambda: nadaraya_watson(torch.zeros(3), torch.arange(4), torch.zeros(4)),
        TypeError,
        "key must be a floating-point tensor; got dtype torch.int64",
    ),
    (
        "pooling value dtype",
        lambda: nadaraya_watson(
            torch.zeros(3), torch.zeros(4), torch.zeros(4, dtype=torch.float64)
        ),
        TypeError,
        "value must have the dtype of query (torch.float32); got torch.float64",
    ),
    (
        "regression key rows",
        lambda: NadarayaWatsonRegression()(torch.zeros(3), torch.zeros(2, 4), torch.zeros(2, 4)),
        ValueError,
        "key must have shape (S,) or (L, S) = (3, S); got (2, 4)",
    ),
    (
        "regression value shape",
        lambda: NadarayaWatsonRegression()(torch.zeros(3), torch.zeros(3, 4), torch.zeros(4)),
        ValueError,
        "value must have the shape of key (3, 4); got (4,)",
    ),
    (
        "regression query 2-D",
        lambda: NadarayaWatsonRegression()(torch.zeros(3, 1), torch.zeros(4), torch.zeros(4)),
        ValueError,
        "query must be 1-D (L,); got shape (3, 1)",
    ),
    (
        "leave_one_out 2-D",
        lambda: leave_one_out(torch.zeros(2, 2)),
        ValueError,
        "x must be 1-D (n,); got shape (2, 2)",
    ),
    (
        "leave_one_out list",
        lambda: leave_one_out([1.0, 2.0]),  # type: ignore[arg-type]
        TypeError,
        "x must be a torch.Tensor; got list",
    ),
    (
        "train shapes",
        lambda: train_nadaraya_watson(NadarayaWatsonRegression(), torch.zeros(4), torch.zeros(5)),
        ValueError,
        "x_train and y_train must have the same shape (n,) with n >= 2; got (4,) and (5,)",
    ),
    (
        "train reduction",
        lambda: train_nadaraya_watson(
            NadarayaWatsonRegression(),
            torch.zeros(4),
            torch.zeros(4),
            reduction="max",  # type: ignore[arg-type]
        ),
        ValueError,
        "reduction must be 'mean' or 'sum'; got 'max'",
    ),
    (
        "train epochs",
        lambda: train_nadaraya_watson(
            NadarayaWatsonRegression(), torch.zeros(4), torch.zeros(4), epochs=-1
        ),
        ValueError,
        "epochs must be at least 0; got -1",
    ),
    # data
    ("n_train", lambda: kernel_regression_data(0), ValueError, "n_train must be at least 1; got 0"),
    (
        "noise_std",
        lambda: kernel_regression_data(noise_std=-0.5),
        ValueError,
        "noise_std must be non-negative; got -0.5",
    ),
    (
        "true_function integer",
        lambda: true_function(torch.arange(3)),
        TypeError,
        "x must be a floating-point tensor; got dtype torch.int64",
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "message"), [pytest.param(*case[1:], id=case[0]) for case in CASES]
)
def test_bad_input_message(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        call()


def test_from_torch_rejects_bias_kv() -> None:
    with pytest.raises(ValueError, match=r"^module must not use add_bias_kv or add_zero_attn"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2, add_bias_kv=True))


def test_no_bare_assert_in_the_library() -> None:
    import ast
    import pathlib

    import attention_book

    package = pathlib.Path(attention_book.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        asserts = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]
        assert asserts == [], f"{path.name} uses assert on lines {asserts}"
