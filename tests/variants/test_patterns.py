"""Attention patterns against hand-built masks and PyTorch's FlexAttention functions."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import (
    and_masks,
    create_block_mask,
    create_mask,
    flex_attention,
    or_masks,
)

from attention_book.variants import (
    MaskMod,
    bigbird,
    blocked_window,
    causal,
    dilated_sliding_window,
    draw_pattern,
    fixed,
    global_tokens,
    mask_density,
    pattern_attention,
    random_keys,
    sliding_window,
    strided,
)

Rule = Callable[[int, int], bool]

# (id, pattern, rule written out for query i and key j)
CASES: list[tuple[str, MaskMod, Rule]] = [
    ("causal", causal(), lambda i, j: j <= i),
    ("window-2", sliding_window(2), lambda i, j: i - 2 <= j <= i),
    ("window-1-3", sliding_window(1, 3), lambda i, j: i - 1 <= j <= i + 3),
    ("window-0-0", sliding_window(0, 0), lambda i, j: i == j),
    ("blocked-3", blocked_window(3), lambda i, j: j <= i and i // 3 - j // 3 in (0, 1)),
    ("blocked-3-both", blocked_window(3, causal=False), lambda i, j: i // 3 - j // 3 in (0, 1)),
    ("blocked-1", blocked_window(1), lambda i, j: i - 1 <= j <= i),
    (
        "dilated-4-2-2",
        dilated_sliding_window(4, 2, 2),
        lambda i, j: i - 4 <= j <= i + 2 and (i - j) % 2 == 0,
    ),
    (
        "dilated-5-3-3",
        dilated_sliding_window(5, 3, 3),
        lambda i, j: i - 5 <= j <= i + 3 and (i - j) % 3 == 0,
    ),
    ("strided-3", strided(3), lambda i, j: j <= i and (i - j < 3 or (i - j) % 3 == 0)),
    ("strided-1", strided(1), lambda i, j: j <= i),
    ("fixed-3", fixed(3), lambda i, j: j <= i and (j // 3 == i // 3 or j % 3 == 2)),
    ("fixed-4-2", fixed(4, 2), lambda i, j: j <= i and (j // 4 == i // 4 or j % 4 >= 2)),
    ("fixed-4-4", fixed(4, 4), lambda i, j: j <= i),
    ("global-0-4", global_tokens([0, 4]), lambda i, j: i in (0, 4) or j in (0, 4)),
    ("global-none", global_tokens([]), lambda i, j: False),
    ("global-beyond", global_tokens(range(2, 100, 50)), lambda i, j: 2 in (i, j)),
]
SIZES = [(1, 1), (7, 7), (13, 13), (5, 9), (9, 5)]


def hand_mask(rule: Rule, num_queries: int, num_keys: int) -> Tensor:
    """The rule evaluated in a plain double loop."""
    rows = [[rule(i, j) for j in range(num_keys)] for i in range(num_queries)]
    return torch.tensor(rows, dtype=torch.bool).reshape(num_queries, num_keys)


def pointwise(mask_mod: MaskMod, num_queries: int, num_keys: int) -> Tensor:
    """The mask function called on one (query, key) pair at a time, without vmap."""
    zero = torch.tensor(0)
    rows = [
        [bool(mask_mod(zero, zero, torch.tensor(i), torch.tensor(j))) for j in range(num_keys)]
        for i in range(num_queries)
    ]
    return torch.tensor(rows, dtype=torch.bool).reshape(num_queries, num_keys)


def dense(mask_mod: MaskMod, num_queries: int, num_keys: int) -> Tensor:
    return create_mask(mask_mod, 1, 1, num_queries, num_keys, device="cpu")[0, 0]


def blockwise_any(mask: Tensor, block: int) -> Tensor:
    """(L, S) -> (ceil(L/block), ceil(S/block)): True where a block holds any True."""
    rows, cols = -(-mask.shape[0] // block), -(-mask.shape[1] // block)
    padded = torch.zeros(rows * block, cols * block, dtype=torch.bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    return padded.reshape(rows, block, cols, block).any(dim=3).any(dim=1)


def flex(query: Tensor, key: Tensor, value: Tensor, mask_mod: MaskMod) -> Tensor:
    """PyTorch's flex_attention in eager mode with the pattern's block mask."""
    block_mask = create_block_mask(
        mask_mod, query.shape[0], query.shape[1], query.shape[2], key.shape[2], device="cpu"
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without torch.compile", category=UserWarning)
        output = flex_attention(query, key, value, block_mask=block_mask)
    assert isinstance(output, Tensor)
    return output


def qkv(
    batch: int, heads: int, num_queries: int, num_keys: int, *, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, heads, num_queries, 4, generator=generator, dtype=torch.float64)
    key = torch.randn(batch, heads, num_keys, 4, generator=generator, dtype=torch.float64)
    value = torch.randn(batch, heads, num_keys, 3, generator=generator, dtype=torch.float64)
    return query, key, value


@pytest.mark.parametrize(("num_queries", "num_keys"), SIZES)
@pytest.mark.parametrize(("name", "mask_mod", "rule"), CASES, ids=[c[0] for c in CASES])
def test_pattern_matches_its_rule(
    name: str, mask_mod: MaskMod, rule: Rule, num_queries: int, num_keys: int
) -> None:
    expected = hand_mask(rule, num_queries, num_keys)
    torch.testing.assert_close(dense(mask_mod, num_queries, num_keys), expected)
    torch.testing.assert_close(pointwise(mask_mod, num_queries, num_keys), expected)
    # every batch row and head gets the same pattern
    full = create_mask(mask_mod, 2, 3, num_queries, num_keys, device="cpu")
    torch.testing.assert_close(full, expected.expand(2, 3, -1, -1))
    drawn = "\n".join("".join("█" if x else "·" for x in row) for row in expected.tolist())
    assert draw_pattern(mask_mod, num_queries, num_keys) == drawn


@pytest.mark.parametrize(("num_queries", "num_keys"), [(13, 13), (5, 9), (9, 5)])
@pytest.mark.parametrize(("name", "mask_mod", "rule"), CASES, ids=[c[0] for c in CASES])
def test_block_mask_agrees_with_dense_mask(
    name: str, mask_mod: MaskMod, rule: Rule, num_queries: int, num_keys: int
) -> None:
    block_mask = create_block_mask(mask_mod, 1, 1, num_queries, num_keys, "cpu", BLOCK_SIZE=4)
    expected = blockwise_any(dense(mask_mod, num_queries, num_keys), 4)
    torch.testing.assert_close(block_mask.to_dense()[0, 0].bool(), expected)


def test_draw_pattern_and_density() -> None:
    assert draw_pattern(causal(), 3) == "█··\n██·\n███"
    assert draw_pattern(sliding_window(0), 1, 3) == "█··"
    assert mask_density(causal(), 4) == 10 / 16
    assert (
        mask_density(sliding_window(2), 7, 9)
        == hand_mask(lambda i, j: i - 2 <= j <= i, 7, 9).double().mean().item()
    )
    assert mask_density(global_tokens([]), 5) == 0.0


def test_blocked_window_sees_between_w_plus_1_and_2w_keys_sliding_exactly_w_plus_1() -> None:
    for window in (2, 3, 4):
        length = 5 * window
        blocked = dense(blocked_window(window), length, length).sum(dim=-1)[window:]
        exact = dense(sliding_window(window), length, length).sum(dim=-1)[window:]
        assert int(blocked.min()) == window + 1
        assert int(blocked.max()) == 2 * window
        assert exact.tolist() == [window + 1] * (length - window)
        # the blocked window counts w + 1, w + 2, ..., 2w along each block
        assert blocked[:window].tolist() == list(range(window + 1, 2 * window + 1))


def test_and_or_masks_compose_with_the_patterns() -> None:
    both_sides = sliding_window(2, 2)
    torch.testing.assert_close(
        dense(and_masks(causal(), both_sides), 13, 13), dense(sliding_window(2), 13, 13)
    )
    longformer = or_masks(sliding_window(1, 1), global_tokens([3]))
    expected = hand_mask(lambda i, j: abs(i - j) <= 1 or 3 in (i, j), 9, 9)
    torch.testing.assert_close(dense(longformer, 9, 9), expected)
    torch.testing.assert_close(
        dense(and_masks(causal(), longformer), 9, 9),
        expected & hand_mask(lambda i, j: j <= i, 9, 9),
    )


def test_random_keys_draws_distinct_keys_per_query() -> None:
    mask = dense(random_keys(3, 13, seed=5), 13, 13)
    assert mask.sum(dim=-1).tolist() == [3] * 13  # a bool table: the 3 keys are distinct
    torch.testing.assert_close(pointwise(random_keys(3, 13, seed=5), 13, 13), mask)
    # the rows are not one shared set of keys
    assert len({tuple(row.tolist()) for row in mask}) > 1
    # a shorter sequence sees the top-left corner of the same table
    torch.testing.assert_close(dense(random_keys(3, 13, seed=5), 5, 9), mask[:5, :9])
    assert not dense(random_keys(0, 7), 7, 7).any()
    assert dense(random_keys(7, 7), 7, 7).all()
    # every batch row and head gets the same keys
    full = create_mask(random_keys(3, 13, seed=5), 2, 3, 13, 13, device="cpu")
    torch.testing.assert_close(full, mask.expand(2, 3, -1, -1))


def test_random_keys_spread_over_all_keys() -> None:
    counts = dense(random_keys(4, 200, seed=0), 200, 200).sum(dim=0)  # times each key is drawn
    assert int(counts.sum()) == 800
    assert (counts > 0).float().mean() > 0.9  # 4 draws per query reach nearly every key
    assert int(counts.max()) < 20  # no key is a favourite (expected 4 draws each)


def test_random_keys_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    state = torch.get_rng_state()
    first = dense(random_keys(2, 9, seed=3), 9, 9)
    again = dense(random_keys(2, 9, seed=3), 9, 9)
    other = dense(random_keys(2, 9, seed=4), 9, 9)
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize(("num_queries", "num_keys"), [(8, 7), (7, 8), (8, 8)])
def test_random_keys_beyond_max_len_raise(num_queries: int, num_keys: int) -> None:
    mask_mod = random_keys(2, 7)
    with pytest.raises(ValueError, match=r"made for max_len = 7 positions.*at 7 or beyond"):
        create_mask(mask_mod, 1, 1, num_queries, num_keys, device="cpu")
    with pytest.raises(ValueError, match=r"made for max_len = 7 positions"):
        create_block_mask(mask_mod, 1, 1, num_queries, num_keys, device="cpu")
    with pytest.raises(ValueError, match=r"made for max_len = 7 positions"):
        pattern_attention(*qkv(1, 1, num_queries, num_keys), mask_mod)


def test_random_keys_work_with_a_length_not_a_multiple_of_the_block_size() -> None:
    mask_mod = random_keys(3, 100)
    block_mask = create_block_mask(mask_mod, None, None, 100, 100, device="cpu")  # 128 blocks
    mask = dense(mask_mod, 100, 100)
    torch.testing.assert_close(block_mask.to_dense()[0, 0].bool(), blockwise_any(mask, 128))
    small = create_block_mask(mask_mod, None, None, 100, 100, "cpu", BLOCK_SIZE=16)
    torch.testing.assert_close(small.to_dense()[0, 0].bool(), blockwise_any(mask, 16))
    query, key, value = qkv(1, 2, 100, 100)
    torch.testing.assert_close(
        flex(query, key, value, mask_mod), pattern_attention(query, key, value, mask_mod).output
    )


def test_bigbird_is_the_or_of_its_parts() -> None:
    parts = or_masks(sliding_window(2, 2), global_tokens(range(2)), random_keys(2, 13, seed=7))
    torch.testing.assert_close(dense(bigbird(2, 2, 2, 13, seed=7), 13, 13), dense(parts, 13, 13))
    torch.testing.assert_close(dense(bigbird(2, 2, 2, 13, seed=7), 5, 9), dense(parts, 5, 9))
    assert not torch.equal(
        dense(bigbird(1, 0, 2, 13, seed=7), 13, 13), dense(bigbird(1, 0, 2, 13, seed=8), 13, 13)
    )
    no_random = bigbird(1, 1, 0, 13)
    expected = hand_mask(lambda i, j: abs(i - j) <= 1 or 0 in (i, j), 13, 13)
    torch.testing.assert_close(dense(no_random, 13, 13), expected)


FLEX_CASES = [
    ("causal", causal(), 7, 7),
    ("window", sliding_window(2, 1), 13, 13),
    ("strided", strided(3), 5, 9),
    ("fixed", fixed(3, 2), 9, 5),
    ("bigbird", bigbird(1, 1, 2, 13, seed=1), 13, 13),
    ("dilated", dilated_sliding_window(4, 4, 2), 1, 1),
]


@pytest.mark.parametrize(
    ("name", "mask_mod", "num_queries", "num_keys"), FLEX_CASES, ids=[c[0] for c in FLEX_CASES]
)
def test_pattern_attention_matches_flex_attention_and_sdpa(
    name: str, mask_mod: MaskMod, num_queries: int, num_keys: int
) -> None:
    query, key, value = qkv(2, 3, num_queries, num_keys)
    mask = create_mask(mask_mod, 2, 3, num_queries, num_keys, device="cpu")
    assert mask.any(dim=-1).all()  # no query without a key: the three agree exactly
    output, weights = pattern_attention(query, key, value, mask_mod)
    torch.testing.assert_close(output, flex(query, key, value, mask_mod))
    torch.testing.assert_close(
        output, F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
    )
    assert weights is not None
    assert (weights[~mask] == 0).all()  # masked weights are exactly 0
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(2, 3, num_queries).double())
    fused = pattern_attention(query, key, value, mask_mod, need_weights=False)
    assert fused.weights is None
    torch.testing.assert_close(fused.output, output)


def test_pattern_attention_scale_and_broadcast_batch() -> None:
    query, key, value = qkv(2, 3, 5, 9)
    mask = create_mask(strided(2), 2, 3, 5, 9, device="cpu")
    expected = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=0.3)
    torch.testing.assert_close(
        pattern_attention(query, key, value, strided(2), scale=0.3)[0], expected
    )
    # key and value shared by the heads: (2, 1, S, E) broadcasts against (2, 3, L, E)
    shared = pattern_attention(query, key[:, :1], value[:, :1], causal()).output
    expected = F.scaled_dot_product_attention(
        query, key[:, :1].expand(-1, 3, -1, -1), value[:, :1].expand(-1, 3, -1, -1), is_causal=True
    )
    torch.testing.assert_close(shared, expected)


def test_fully_masked_query_gets_zeros_like_flex_attention() -> None:
    # query 2 may look at nothing
    hole = and_masks(causal(), lambda b, h, q_idx, kv_idx: q_idx != 2)
    query, key, value = qkv(1, 2, 5, 5)
    output, weights = pattern_attention(query, key, value, hole)
    assert weights is not None
    assert output[:, :, 2].abs().max() == 0
    assert weights[:, :, 2].abs().max() == 0
    assert not output.isnan().any()
    # PyTorch's flex_attention gives a zero row too (its log-sum-exp there is -inf)
    torch.testing.assert_close(flex(query, key, value, hole), output)
    rows = [0, 1, 3, 4]
    sdpa = F.scaled_dot_product_attention(
        query, key, value, attn_mask=create_mask(hole, 1, 2, 5, 5, device="cpu")
    )
    torch.testing.assert_close(output[:, :, rows], sdpa[:, :, rows])


def test_pattern_attention_gradients() -> None:
    query, key, value = (t.requires_grad_() for t in qkv(1, 2, 5, 7))
    mask_mod = or_masks(sliding_window(1), global_tokens([0]))
    assert torch.autograd.gradcheck(
        lambda q, k, v: pattern_attention(q, k, v, mask_mod).output, (query, key, value)
    )


def test_pattern_attention_does_not_change_its_inputs() -> None:
    query, key, value = qkv(1, 1, 5, 5)
    copies = [t.clone() for t in (query, key, value)]
    pattern_attention(query, key, value, sliding_window(1))
    for tensor, copy in zip((query, key, value), copies, strict=True):
        assert torch.equal(tensor, copy)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: sliding_window(-2), ValueError, r"^before must be at least 0; got -2$"),
        (lambda: sliding_window(1, -1), ValueError, r"^after must be at least 0; got -1$"),
        (
            lambda: sliding_window(1.5),  # type: ignore[arg-type]
            TypeError,
            r"^before must be an int; got float$",
        ),
        (lambda: blocked_window(0), ValueError, r"^window must be at least 1; got 0$"),
        (
            lambda: dilated_sliding_window(-1, 0, 1),
            ValueError,
            r"^before must be at least 0; got -1$",
        ),
        (
            lambda: dilated_sliding_window(1, -3, 1),
            ValueError,
            r"^after must be at least 0; got -3$",
        ),
        (
            lambda: dilated_sliding_window(2, 0, 0),
            ValueError,
            r"^dilation must be at least 1; got 0$",
        ),
        (lambda: strided(0), ValueError, r"^stride must be at least 1; got 0$"),
        (lambda: fixed(0), ValueError, r"^block must be at least 1; got 0$"),
        (lambda: fixed(3, 0), ValueError, r"^num_summary must be at least 1; got 0$"),
        (lambda: fixed(3, 4), ValueError, r"^num_summary must be at most block = 3; got 4$"),
        (lambda: global_tokens([1, -1]), ValueError, r"^indices\[1\] must be at least 0; got -1$"),
        (
            lambda: global_tokens(["0"]),  # type: ignore[list-item]
            TypeError,
            r"^indices\[0\] must be an int; got str$",
        ),
        (lambda: random_keys(-1, 5), ValueError, r"^num_random must be at least 0; got -1$"),
        (lambda: random_keys(6, 5), ValueError, r"^num_random must be at most max_len = 5; got 6$"),
        (lambda: random_keys(0, 0), ValueError, r"^max_len must be at least 1; got 0$"),
        (lambda: random_keys(1, 5, seed=-1), ValueError, r"^seed must be at least 0; got -1$"),
        (lambda: bigbird(-1, 0, 0, 5), ValueError, r"^window must be at least 0; got -1$"),
        (lambda: bigbird(1, -2, 0, 5), ValueError, r"^num_global must be at least 0; got -2$"),
        (
            lambda: bigbird(1, 1, 6, 5),
            ValueError,
            r"^num_random must be at most max_len = 5; got 6$",
        ),
        (lambda: draw_pattern(causal(), 0), ValueError, r"^L must be at least 1; got 0$"),
        (lambda: draw_pattern(causal(), 3, 0), ValueError, r"^S must be at least 1; got 0$"),
        (lambda: mask_density(causal(), -1), ValueError, r"^L must be at least 1; got -1$"),
        (
            lambda: draw_pattern(3, 3),  # type: ignore[arg-type]
            TypeError,
            r"^mask_mod must be a callable mask_mod\(b, h, q_idx, kv_idx\) -> Tensor; got int$",
        ),
    ],
)
def test_bad_arguments(make: Callable[[], object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        make()


def test_pattern_attention_bad_inputs() -> None:
    query, key, value = qkv(1, 2, 5, 7)
    with pytest.raises(
        ValueError, match=r"^query must have 4 dims \(N, H, L, E\); got shape \(2, 5, 4\)$"
    ):
        pattern_attention(query[0], key[0], value[0], causal())
    with pytest.raises(
        ValueError, match=r"^key must have 4 dims \(N, H, S, E\); got shape \(1, 1, 2, 7, 4\)$"
    ):
        pattern_attention(query, key[None], value, causal())
    with pytest.raises(
        ValueError, match=r"^value must have 4 dims \(N, H, S, Ev\); got shape \(1, 1, 2, 7, 3\)$"
    ):
        pattern_attention(query, key, value[None], causal())
    with pytest.raises(TypeError, match=r"^mask_mod must be a callable .*; got NoneType$"):
        pattern_attention(query, key, value, None)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"^query must be a floating-point tensor; got dtype torch.int64$"
    ):
        pattern_attention(query.long(), key, value, causal())
