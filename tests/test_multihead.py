"""MultiHeadAttention against torch.nn.MultiheadAttention with the weights copied across."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book import MultiHeadAttention, RotaryEmbedding


def torch_module(
    *,
    batch_first: bool,
    bias: bool = True,
    kdim: int | None = None,
    vdim: int | None = None,
    dtype: torch.dtype = torch.float64,
) -> nn.MultiheadAttention:
    """PyTorch's module with every parameter random (its biases start at zero)."""
    module = nn.MultiheadAttention(
        8, 2, bias=bias, kdim=kdim, vdim=vdim, batch_first=batch_first, dtype=dtype
    ).eval()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    return module


def torch_forward(
    module: nn.MultiheadAttention, query: Tensor, key: Tensor, value: Tensor, **kwargs: object
) -> tuple[Tensor, Tensor | None]:
    """Call PyTorch's module on batch-first inputs whatever its batch_first; return batch first."""
    if not module.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    output, weights = module(query, key, value, **kwargs)
    return (output if module.batch_first else output.transpose(0, 1)), weights


@pytest.mark.parametrize(("kdim", "vdim"), [(None, None), (3, 5)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
def test_from_torch_matches_outputs_and_per_head_weights(
    batch_first: bool, bias: bool, kdim: int | None, vdim: int | None
) -> None:
    reference = torch_module(batch_first=batch_first, bias=bias, kdim=kdim, vdim=vdim)
    ours = MultiHeadAttention.from_torch(reference)
    assert ours.q_proj.bias is None if not bias else ours.q_proj.bias is not None
    query = torch.randn(3, 4, 8, dtype=torch.float64)  # (N, L, E)
    key = torch.randn(3, 6, kdim or 8, dtype=torch.float64)  # (N, S, kdim)
    value = torch.randn(3, 6, vdim or 8, dtype=torch.float64)  # (N, S, vdim)
    # PyTorch's polarity: True = ignore. Column 0 stays visible so that no row is empty.
    key_padding_mask = torch.tensor(
        [
            [False, False, False, False, True, True],
            [False] * 6,
            [False, True, False, True, False, True],
        ]
    )
    torch_attn_mask = torch.rand(4, 6) < 0.3
    torch_attn_mask[:, 0] = False
    expected, expected_weights = torch_forward(
        reference,
        query,
        key,
        value,
        key_padding_mask=key_padding_mask,
        attn_mask=torch_attn_mask,
        average_attn_weights=False,
    )
    # Ours: True = may attend, (N, 1, L, S) broadcasting over the heads.
    attn_mask = ~torch_attn_mask & ~key_padding_mask[:, None, None, :]
    output, weights = ours(query, key, value, attn_mask)
    torch.testing.assert_close(output, expected)
    assert weights is not None
    assert weights.shape == (3, 2, 4, 6)  # (N, H, L, S)
    torch.testing.assert_close(weights, expected_weights)
    fast = ours(query, key, value, attn_mask, need_weights=False)
    assert fast.weights is None
    torch.testing.assert_close(fast.output, expected)


def test_averaged_weights_and_float32_default_tolerances() -> None:
    reference = torch_module(batch_first=True, dtype=torch.float32)
    ours = MultiHeadAttention.from_torch(reference)
    assert ours.q_proj.weight.dtype == torch.float32
    x, memory = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
    expected, expected_weights = reference(x, memory, memory)  # averaged over heads
    output, weights = ours(x, memory, memory)
    assert weights is not None
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights.mean(dim=1), expected_weights)


def test_matches_pytorchs_fused_inference_path() -> None:
    reference = torch_module(batch_first=True, dtype=torch.float32)
    ours = MultiHeadAttention.from_torch(reference)
    x = torch.randn(2, 5, 8)
    padding = torch.tensor([[False] * 5, [False, False, True, True, True]])
    with torch.inference_mode():
        expected = reference(x, x, x, key_padding_mask=padding, need_weights=False)[0]
        output = ours(x, x, x, valid_lens=torch.tensor([5, 2]), need_weights=False).output
    # PyTorch's fused kernel leaves padded query rows unspecified; compare the real ones.
    torch.testing.assert_close(output[0], expected[0])
    torch.testing.assert_close(output[1, :2], expected[1, :2])


def test_valid_lens_and_is_causal_match_pytorch_masks() -> None:
    reference = torch_module(batch_first=True)
    ours = MultiHeadAttention.from_torch(reference)
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    key_padding_mask = torch.arange(5) >= torch.tensor([[5], [3]])  # True = ignore
    future = torch.ones(5, 5, dtype=torch.bool).triu(1)  # True = ignore
    expected = reference(x, x, x, key_padding_mask=key_padding_mask, attn_mask=future)[0]
    output = ours(x, x, x, valid_lens=torch.tensor([5, 3]), is_causal=True).output
    torch.testing.assert_close(output, expected)


def test_from_torch_copies_training_mode_and_rejects_extra_options() -> None:
    assert MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2).train()).training
    assert not MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2).eval()).training
    with pytest.raises(ValueError, match="must not use add_bias_kv or add_zero_attn"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2, add_bias_kv=True))
    with pytest.raises(ValueError, match="must not use add_bias_kv or add_zero_attn"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2, add_zero_attn=True))


def test_submodules_and_shapes() -> None:
    module = MultiHeadAttention(12, 3, kdim=5, vdim=7, bias=False)
    names = {name for name, _ in module.named_children()}
    assert names == {"q_proj", "k_proj", "v_proj", "out_proj"}
    assert all(isinstance(child, nn.Linear) for child in module.children())
    assert (module.k_proj.in_features, module.v_proj.in_features) == (5, 7)
    assert dict(module.out_proj.named_parameters()).keys() == {"weight"}
    output, weights = module(torch.randn(2, 4, 12), torch.randn(2, 9, 5), torch.randn(2, 9, 7))
    assert output.shape == (2, 4, 12)
    assert weights is not None
    assert weights.shape == (2, 3, 4, 9)
    assert "num_heads=3" in repr(module)


def test_extra_leading_batch_dims_act_like_a_loop() -> None:
    module = MultiHeadAttention(8, 4).eval()
    query, key = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 6, 8)
    valid_lens = torch.tensor([6, 2])  # refers to the leading dim N = 2
    output, weights = module(query, key, key, valid_lens=valid_lens)
    assert weights is not None
    assert weights.shape == (2, 3, 4, 5, 6)
    for b in range(3):
        single = module(query[:, b], key[:, b], key[:, b], valid_lens=valid_lens)
        torch.testing.assert_close(output[:, b], single.output)


def test_dropout_weights_are_the_ones_applied() -> None:
    module = MultiHeadAttention(8, 2, dropout=0.5).train()
    query, key = torch.randn(2, 4, 8), torch.randn(2, 6, 8)
    output, weights = module(query, key, key)
    assert weights is not None
    assert (weights == 0).any()
    v = module.v_proj(key).reshape(2, 6, 2, 4).transpose(1, 2)  # (N, S, E) -> (N, H, S, E/H)
    heads = weights @ v  # (N, H, L, S) @ (N, H, S, E/H) -> (N, H, L, E/H)
    expected = module.out_proj(heads.transpose(1, 2).reshape(2, 4, 8))
    torch.testing.assert_close(output, expected)
    module.eval()
    first, second = module(query, key, key).output, module(query, key, key).output
    assert torch.equal(first, second)


def test_gradcheck_in_float64() -> None:
    module = MultiHeadAttention(4, 2, kdim=3).double()
    query = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
    key = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    value = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v: module(q, k, v, valid_lens=torch.tensor([1, 3])).output, (query, key, value)
    )


def test_inputs_are_not_mutated() -> None:
    module = MultiHeadAttention(8, 2)
    query, key = torch.randn(2, 4, 8), torch.randn(2, 6, 8)
    copies = query.clone(), key.clone()
    module(query, key, key, torch.rand(2, 1, 4, 6) > 0.5)
    assert torch.equal(query, copies[0])
    assert torch.equal(key, copies[1])


def test_per_batch_mask_is_never_read_as_per_head() -> None:
    # N == H == 2: a (N, L, S) mask must apply to batch rows, the same for every head.
    attention = MultiHeadAttention(embed_dim=4, num_heads=2).double()
    query, key = (
        torch.randn(2, 3, 4, dtype=torch.float64),
        torch.randn(2, 5, 4, dtype=torch.float64),
    )
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, :, 2:] = False  # batch row 0 sees 2 keys, row 1 sees all 5
    _, weights = attention(query, key, key, mask)
    assert weights is not None
    assert torch.all(weights[0, :, :, 2:] == 0)
    assert torch.all(weights[1] > 0)
    _, explicit = attention(query, key, key, mask[:, None])
    torch.testing.assert_close(weights, explicit)


def complex_rope(x: Tensor, *, interleaved: bool) -> Tensor:
    """RoPE at positions 0..L-1 as complex multiplication, written independently of the package."""
    length, dim = x.shape[-2], x.shape[-1]
    half = dim // 2
    theta = 10000.0 ** (-torch.arange(half, dtype=torch.float64) * 2 / dim)  # (E/2,)
    angle = torch.arange(length, dtype=torch.float64)[:, None] * theta  # (L, E/2)
    rotation = torch.polar(torch.ones_like(angle), angle)
    if interleaved:
        pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], half, 2).contiguous())
        return torch.view_as_real(pairs * rotation).flatten(-2)
    rotated = torch.complex(x[..., :half], x[..., half:]) * rotation
    return torch.cat((rotated.real, rotated.imag), dim=-1)


@pytest.mark.parametrize("interleaved", [True, False])
def test_rotary_rotates_each_heads_queries_and_keys(interleaved: bool) -> None:
    rotary = RotaryEmbedding(6, interleaved=interleaved)
    module = MultiHeadAttention(12, 2, rotary=rotary).double()
    assert module.rotary is rotary
    query = torch.randn(3, 5, 12, dtype=torch.float64)  # (N, L, E)
    key = torch.randn(3, 7, 12, dtype=torch.float64)  # (N, S, E), S != L
    valid_lens = torch.tensor([7, 3, 1])
    output, weights = module(query, key, key, valid_lens=valid_lens)

    def heads(x: Tensor) -> Tensor:  # (N, L, E) -> (N, H, L, E/H)
        return x.reshape(3, -1, 2, 6).transpose(1, 2)

    q = complex_rope(heads(module.q_proj(query)), interleaved=interleaved)  # positions 0..L-1
    k = complex_rope(heads(module.k_proj(key)), interleaved=interleaved)  # positions 0..S-1
    v = heads(module.v_proj(key))  # values are not rotated
    mask = (torch.arange(7) < valid_lens[:, None])[:, None, None, :]  # (N, 1, 1, S)
    expected_heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    expected = module.out_proj(expected_heads.transpose(1, 2).reshape(3, 5, 12))
    torch.testing.assert_close(output, expected)
    scores = (q @ k.transpose(-2, -1) / 6**0.5).masked_fill(~mask, float("-inf"))
    assert weights is not None
    torch.testing.assert_close(weights, scores.softmax(dim=-1))
    fast = module(query, key, key, valid_lens=valid_lens, need_weights=False)
    torch.testing.assert_close(fast.output, expected)


def test_rotary_scores_see_relative_positions_only() -> None:
    # The same token at every position: without positions every score is equal; with
    # rotary embeddings the weights of query i depend on j - i, so shifting both by one
    # (dropping the first query and key) leaves the surviving scores as they were.
    module = MultiHeadAttention(8, 2, rotary=RotaryEmbedding(4)).double()
    plain = MultiHeadAttention(8, 2).double()
    plain.load_state_dict(module.state_dict())  # rotary adds nothing to the state dict
    x = torch.randn(1, 1, 8, dtype=torch.float64).expand(1, 6, 8)
    _, rotary_weights = module(x, x, x, is_causal=True)
    _, plain_weights = plain(x, x, x, is_causal=True)
    assert rotary_weights is not None
    assert plain_weights is not None
    torch.testing.assert_close(
        plain_weights[0, :, 5], torch.full((2, 6), 1 / 6, dtype=torch.float64)
    )
    assert not torch.allclose(rotary_weights, plain_weights)
    _, shifted = module(x[:, 1:], x[:, 1:], x[:, 1:], is_causal=True)
    assert shifted is not None
    # query i at distance d from key j gets the same score, so the rows of the shorter
    # sequence are the last rows of the longer one with its first key left out
    for i in range(5):
        kept = rotary_weights[0, :, i + 1, 1 : i + 2]
        torch.testing.assert_close(shifted[0, :, i, : i + 1], kept / kept.sum(-1, keepdim=True))


def test_rotary_must_fit_the_heads() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape("rotary must have dim = embed_dim / num_heads = 8 / 2 = 4; got dim = 8"),
    ):
        MultiHeadAttention(8, 2, rotary=RotaryEmbedding(8))
    with pytest.raises(TypeError, match="rotary must be a RotaryEmbedding or None; got int"):
        MultiHeadAttention(8, 2, rotary=4)  # type: ignore[arg-type]
