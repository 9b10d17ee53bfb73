"""chunked_attention and online_softmax against PyTorch's SDPA, the package's dense path and formulas."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention.flex_attention import create_mask

from attention_book import scaled_dot_product_attention
from attention_book.variants import (
    MaskMod,
    chunked_attention,
    global_tokens,
    online_softmax,
    pattern_attention,
    random_keys,
    sliding_window,
    strided,
)


def inputs(
    batch: tuple[int, ...],
    num_queries: int,
    num_keys: int,
    features: int = 4,
    value_features: int = 3,
    dtype: torch.dtype = torch.float64,
) -> tuple[Tensor, Tensor, Tensor]:
    query = torch.randn(*batch, num_queries, features, dtype=dtype)
    key = torch.randn(*batch, num_keys, features, dtype=dtype)
    value = torch.randn(*batch, num_keys, value_features, dtype=dtype)
    return query, key, value


def package(query: Tensor, key: Tensor, value: Tensor, *args: Tensor, **options: object) -> Tensor:
    """The package's dense path: the reference with zeros for queries without keys."""
    output, _ = scaled_dot_product_attention(query, key, value, *args, **options)  # type: ignore[arg-type]
    return output


SIZES = [(1, 1), (1, 7), (5, 5), (5, 13), (13, 5), (97, 97), (97, 50)]  # (L, S)
CHUNKS = [(3, 16), (16, 3), (128, 128)]  # (query_chunk_size, key_chunk_size), beyond L and S too
CASES = [(*size, *chunks) for size in SIZES for chunks in CHUNKS] + [
    (*size, 1, 1)
    for size in SIZES[:5]  # one query and one key at a time: small sizes only
]


@pytest.mark.parametrize(("num_queries", "num_keys", "query_chunk", "key_chunk"), CASES)
@pytest.mark.parametrize("is_causal", [False, True])
def test_equals_pytorch_sdpa(
    num_queries: int, num_keys: int, query_chunk: int, key_chunk: int, is_causal: bool
) -> None:
    query, key, value = inputs((2, 3), num_queries, num_keys)
    expected = F.scaled_dot_product_attention(query, key, value, is_causal=is_causal)
    output = chunked_attention(
        query,
        key,
        value,
        is_causal=is_causal,
        query_chunk_size=query_chunk,
        key_chunk_size=key_chunk,
    )
    torch.testing.assert_close(output, expected)


@pytest.mark.parametrize(
    "mask_shape",
    [(11, 6), (2, 1, 11, 6), (1, 6), (6,), (2, 3, 1, 6), (2, 3, 11, 1), (3, 11, 6), ()],
)
def test_broadcast_masks_equal_pytorch_and_the_package(mask_shape: tuple[int, ...]) -> None:
    query, key, value = inputs((2, 3), 11, 6)
    mask = torch.rand(mask_shape) > 0.4
    found = chunked_attention(query, key, value, mask, query_chunk_size=4, key_chunk_size=4)
    torch.testing.assert_close(found, package(query, key, value, mask))
    has_key = mask.expand(2, 3, 11, 6).any(dim=-1, keepdim=True)  # rows where PyTorch is defined
    dense = mask.expand(11, 6) if mask.ndim < 2 else mask  # PyTorch wants at least (L, S)
    expected = F.scaled_dot_product_attention(query, key, value, attn_mask=dense)
    torch.testing.assert_close(
        torch.where(has_key, found, 0.0), torch.where(has_key, expected, 0.0)
    )


def test_fully_masked_rows_are_zeros_not_nan() -> None:
    query, key, value = inputs((2,), 6, 5)
    mask = torch.ones(6, 5, dtype=torch.bool)
    mask[1] = False  # a query that sees no key
    mask[4, :3] = False
    found = chunked_attention(query, key, value, mask, query_chunk_size=2, key_chunk_size=2)
    assert not found.isnan().any()
    assert bool((found[:, 1] == 0).all())
    torch.testing.assert_close(found, package(query, key, value, mask))


@pytest.mark.parametrize(("num_queries", "num_keys"), [(9, 4), (4, 9), (7, 7)])
def test_attn_mask_and_is_causal_combine_with_and(num_queries: int, num_keys: int) -> None:
    query, key, value = inputs((2, 1), num_queries, num_keys)
    mask = torch.rand(num_queries, num_keys) > 0.3
    found = chunked_attention(
        query, key, value, mask, is_causal=True, query_chunk_size=3, key_chunk_size=2
    )
    torch.testing.assert_close(found, package(query, key, value, mask, is_causal=True))
    both = mask & torch.ones(num_queries, num_keys, dtype=torch.bool).tril()  # top-left aligned
    torch.testing.assert_close(found, package(query, key, value, both))


def test_float32_with_default_tolerances() -> None:
    query, key, value = inputs((2, 4), 97, 61, 16, 8, dtype=torch.float32)
    mask = torch.rand(97, 61) > 0.2
    found = chunked_attention(query, key, value, mask, query_chunk_size=32, key_chunk_size=16)
    assert found.dtype == torch.float32
    torch.testing.assert_close(found, F.scaled_dot_product_attention(query, key, value, mask))
    causal = chunked_attention(query, key, value, is_causal=True, key_chunk_size=10)
    expected = F.scaled_dot_product_attention(query, key, value, is_causal=True)
    torch.testing.assert_close(causal, expected)


def test_scale_and_value_features() -> None:
    query, key, value = inputs((3,), 8, 10, 5, 7)
    found = chunked_attention(query, key, value, scale=0.3, query_chunk_size=3, key_chunk_size=4)
    expected = F.scaled_dot_product_attention(query, key, value, scale=0.3)
    assert found.shape == (3, 8, 7)
    torch.testing.assert_close(found, expected)


def test_batch_dims_broadcast() -> None:
    query = torch.randn(2, 1, 7, 4, dtype=torch.float64)
    key = torch.randn(1, 3, 9, 4, dtype=torch.float64)
    value = torch.randn(9, 5, dtype=torch.float64)
    found = chunked_attention(query, key, value, query_chunk_size=3, key_chunk_size=4)
    assert found.shape == (2, 3, 7, 5)
    torch.testing.assert_close(found, package(query, key, value))


def test_no_keys_and_no_queries() -> None:
    query, key, value = inputs((2,), 4, 0)
    assert torch.equal(chunked_attention(query, key, value), torch.zeros(2, 4, 3).double())
    query, key, value = inputs((2,), 0, 5)
    assert chunked_attention(query, key, value).shape == (2, 0, 3)


PATTERNS: list[tuple[str, MaskMod]] = [
    ("window", sliding_window(3, 2)),
    ("causal window", sliding_window(4)),
    ("strided", strided(3)),
    ("random", random_keys(2, 40, seed=3)),
    ("global", global_tokens([0, 5])),
    ("nothing global", global_tokens([])),  # answers with a 0-dim False: every row is empty
]


@pytest.mark.parametrize("pattern", [p for _, p in PATTERNS], ids=[n for n, _ in PATTERNS])
@pytest.mark.parametrize(("num_queries", "num_keys"), [(13, 13), (9, 31), (23, 6)])
def test_mask_mod_equals_pattern_attention(
    pattern: MaskMod, num_queries: int, num_keys: int
) -> None:
    query, key, value = inputs((2, 3), num_queries, num_keys)
    found = chunked_attention(
        query, key, value, mask_mod=pattern, query_chunk_size=4, key_chunk_size=5
    )
    expected, _ = pattern_attention(query, key, value, pattern)
    torch.testing.assert_close(found, expected)


def test_mask_mod_sees_batch_and_head() -> None:
    def per_head(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        return (kv_idx - q_idx).abs() <= h + b  # head h of row b sees h + b keys each side

    query, key, value = inputs((2, 3), 12, 12)
    found = chunked_attention(query, key, value, mask_mod=per_head, key_chunk_size=5)
    expected = F.scaled_dot_product_attention(
        query, key, value, attn_mask=create_mask(per_head, 2, 3, 12, 12, device="cpu")
    )
    torch.testing.assert_close(found, expected)


def test_mask_mod_with_attn_mask_and_is_causal() -> None:
    query, key, value = inputs((2, 2), 15, 15)
    mask = torch.rand(15, 15) > 0.3
    window = sliding_window(3, 3)
    found = chunked_attention(
        query, key, value, mask, is_causal=True, mask_mod=window, query_chunk_size=4
    )
    dense = create_mask(window, 2, 2, 15, 15, device="cpu") & mask
    torch.testing.assert_close(found, package(query, key, value, dense, is_causal=True))


def test_mask_mod_is_called_on_blocks_never_on_the_whole_grid() -> None:
    shapes: list[tuple[tuple[int, ...], ...]] = []
    window = sliding_window(2, 2)

    def recording(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        shapes.append((tuple(b.shape), tuple(h.shape), tuple(q_idx.shape), tuple(kv_idx.shape)))
        return window(b, h, q_idx, kv_idx)

    query, key, value = inputs((2, 3), 20, 20)
    chunked_attention(query, key, value, mask_mod=recording, query_chunk_size=8, key_chunk_size=6)
    blocks = shapes[1:]  # the first call is the up-front check of the answer's dtype
    assert len(blocks) == 3 * 4  # one call per block: 3 query chunks x 4 key chunks
    assert all(s[:2] == ((2, 1, 1, 1), (1, 3, 1, 1)) for s in blocks)
    assert {s[2] for s in blocks} == {(1, 1, 8, 1), (1, 1, 4, 1)}
    assert {s[3] for s in blocks} == {(1, 1, 1, 6), (1, 1, 1, 2)}


def test_blocks_nobody_may_see_are_skipped() -> None:
    # NaN values in a computed block would reach the output (0 * NaN = NaN); skipped, they don't
    query, key, value = inputs((1, 2), 16, 64)
    value[..., 24:, :] = math.nan
    window = sliding_window(2, 2)  # queries 0..15 see keys up to 17: key chunks 0, 1 and 2
    found = chunked_attention(query, key, value, mask_mod=window, key_chunk_size=8)
    expected, _ = pattern_attention(query, key[..., :24, :], value[..., :24, :], window)
    torch.testing.assert_close(found, expected)
    found = chunked_attention(query, key, value, is_causal=True, key_chunk_size=8)
    expected = package(query, key[..., :24, :], value[..., :24, :], is_causal=True)
    torch.testing.assert_close(found, expected)
    mask = torch.zeros(64, dtype=torch.bool)
    mask[:20] = True
    found = chunked_attention(query, key, value, mask, key_chunk_size=8)
    torch.testing.assert_close(
        found, package(query, key[..., :24, :], value[..., :24, :], mask[:24])
    )


def test_inputs_are_not_modified() -> None:
    query, key, value = inputs((2,), 7, 9)
    mask = torch.rand(7, 9) > 0.5
    copies = [x.clone() for x in (query, key, value, mask)]
    chunked_attention(query, key, value, mask, is_causal=True, key_chunk_size=4)
    for original, copy in zip((query, key, value, mask), copies, strict=True):
        assert torch.equal(original, copy)


def test_gradients_equal_pytorch() -> None:
    query, key, value = (x.requires_grad_() for x in inputs((2, 2), 13, 11))
    expected = torch.autograd.grad(
        F.scaled_dot_product_attention(query, key, value, is_causal=True).pow(2).sum(),
        (query, key, value),
    )
    found = torch.autograd.grad(
        chunked_attention(query, key, value, is_causal=True, query_chunk_size=4, key_chunk_size=3)
        .pow(2)
        .sum(),
        (query, key, value),
    )
    for e, f in zip(expected, found, strict=True):
        torch.testing.assert_close(f, e)


def test_gradients_with_masks_and_empty_rows_equal_the_package() -> None:
    query, key, value = (x.requires_grad_() for x in inputs((2,), 9, 7))
    mask = torch.rand(9, 7) > 0.4
    mask[3] = False
    window = sliding_window(2, 1)
    expected = torch.autograd.grad(
        package(query, key, value, mask & create_mask(window, 1, 1, 9, 7, device="cpu")[0]).sum(),
        (query, key, value),
    )
    found = torch.autograd.grad(
        chunked_attention(
            query[None], key[None], value[None], mask, mask_mod=window, key_chunk_size=2
        ).sum(),
        (query, key, value),
    )
    for e, f in zip(expected, found, strict=True):
        torch.testing.assert_close(f, e)
    assert bool((found[0][:, 3] == 0).all())  # a query without keys gets no gradient


def test_gradcheck() -> None:
    query, key, value = (x.requires_grad_() for x in inputs((2,), 5, 6, 3, 2))
    mask = torch.rand(5, 6) > 0.3
    assert torch.autograd.gradcheck(
        lambda q, k, v: chunked_attention(q, k, v, mask, query_chunk_size=2, key_chunk_size=4),
        (query, key, value),
    )


MEMORY_SCRIPT = textwrap.dedent(
    """
    import torch
    from attention_book.variants import chunked_attention
    torch.set_num_threads(1)

    def peak():  # the high-water mark of resident memory, MiB (not ru_maxrss: see the test)
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024

    def reset_peak():  # back to the current resident memory
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return peak()

    q, k, v = torch.randn(3, 1, 1, 4096, 8).unbind(0)  # (N, H, L, E): the scores would be 64 MiB
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    chunked_attention(q[..., :8, :], k, v, key_chunk_size=512).sum().backward()  # warm up
    with torch.no_grad():
        base = reset_peak()
        chunked_attention(q, k, v, query_chunk_size=512, key_chunk_size=512)
        forward = peak() - base
    base = reset_peak()
    chunked_attention(q, k, v, query_chunk_size=512, key_chunk_size=512).sum().backward()
    backward = peak() - base  # the weights alone, if kept for backward, would be 64 MiB
    with torch.no_grad():
        base = reset_peak()
        torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v  # dense: the gauge must see it
        dense = peak() - base
    print(f"{forward:.1f} {backward:.1f} {dense:.1f}")
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's /proc")
def test_peak_memory_stays_far_below_one_score_matrix() -> None:
    # resident memory counts every allocation (torch's CPU allocator is invisible to
    # tracemalloc); ru_maxrss would not do: after exec it never falls below the parent's
    # resident memory (pytest's, with torch). glibc's small mmap threshold hands freed blocks
    # back at once, so the peak is that of live tensors, not of a fragmented heap
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
    )
    forward, backward, dense = (float(x) for x in result.stdout.split())
    assert dense > 64, f"the gauge missed the dense (L, S) scores: {dense:.1f} MiB"
    assert forward < 16, f"forward took {forward:.1f} MiB above its inputs; (L, S) is 64 MiB"
    assert backward < 24, f"forward and backward took {backward:.1f} MiB above their inputs"


@pytest.mark.parametrize(
    "sizes", [[4], [1, 1, 1, 1], [3, 2], [2, 1, 5]], ids=["one", "ones", "3+2", "2+1+5"]
)
def test_online_softmax_equals_softmax_and_attention(sizes: list[int]) -> None:
    scores = torch.randn(sum(sizes), dtype=torch.float64) * 3
    values = torch.randn(sum(sizes), 4, dtype=torch.float64)
    result = online_softmax(torch.split(scores, sizes), torch.split(values, sizes))
    torch.testing.assert_close(result.weights, scores.softmax(dim=-1))
    torch.testing.assert_close(result.output, scores.softmax(dim=-1) @ values)
    assert len(result.steps) == len(sizes)
    seen = 0
    for step, size in zip(result.steps, sizes, strict=True):
        seen += size
        maximum = scores[:seen].max()
        assert step.maximum == maximum  # the running maximum is exact
        torch.testing.assert_close(step.total, (scores[:seen] - maximum).exp().sum())
        torch.testing.assert_close(step.output, scores[:seen].softmax(dim=-1) @ values[:seen])


def test_online_softmax_without_values_and_with_leading_dims() -> None:
    scores = torch.randn(2, 3, 7)
    result = online_softmax(torch.split(scores, [4, 3], dim=-1))
    assert result.output is None
    assert all(step.output is None for step in result.steps)
    assert result.steps[0].maximum.shape == (2, 3)
    torch.testing.assert_close(result.weights, scores.softmax(dim=-1))


def test_online_softmax_masked_scores() -> None:
    inf = math.inf
    chunks = [torch.tensor([-inf, -inf]), torch.tensor([0.0, -inf]), torch.tensor([0.0])]
    result = online_softmax(chunks, [torch.ones(2, 1), torch.ones(2, 1), 3 * torch.ones(1, 1)])
    first = result.steps[0]
    assert first.maximum == -inf
    assert first.total == 0
    assert first.output is not None
    assert first.output.tolist() == [0.0]  # nothing seen yet: zeros, not NaN
    assert result.weights.tolist() == [0.0, 0.0, 0.5, 0.0, 0.5]
    assert result.output is not None
    assert result.output.tolist() == [2.0]
    empty = online_softmax([torch.full((3,), -inf)])
    assert empty.weights.tolist() == [0.0, 0.0, 0.0]


def test_online_softmax_does_not_modify_its_chunks() -> None:
    chunks = [torch.randn(3), torch.randn(2)]
    copies = [c.clone() for c in chunks]
    online_softmax(chunks)
    assert all(torch.equal(c, d) for c, d in zip(chunks, copies, strict=True))


def test_errors_of_chunked_attention() -> None:
    query, key, value = inputs((1, 1), 4, 4)
    with pytest.raises(ValueError, match="query_chunk_size must be at least 1; got 0"):
        chunked_attention(query, key, value, query_chunk_size=0)
    with pytest.raises(ValueError, match="key_chunk_size must be at least 1; got -3"):
        chunked_attention(query, key, value, key_chunk_size=-3)
    with pytest.raises(TypeError, match="key_chunk_size must be an int; got float"):
        chunked_attention(query, key, value, key_chunk_size=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="attn_mask must be a boolean tensor"):
        chunked_attention(query, key, value, torch.ones(4, 4))
    with pytest.raises(ValueError, match=r"attn_mask must broadcast to \(N, H, L, S\)"):
        chunked_attention(query, key, value, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="query must be a floating-point tensor"):
        chunked_attention(query.long(), key, value)
    with pytest.raises(ValueError, match=r"value must have S = 4 rows like key"):
        chunked_attention(query, key, value[..., :3, :])
    with pytest.raises(TypeError, match="mask_mod must be a callable"):
        chunked_attention(query, key, value, mask_mod=3)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"query must have 4 dims \(N, H, L, E\) with mask_mod; got shape \(4, 4\)"
    ):
        chunked_attention(query[0, 0], key[0, 0], value[0, 0], mask_mod=sliding_window(1))
    with pytest.raises(
        TypeError, match=r"mask_mod must return a boolean tensor .* got torch.int64"
    ):
        chunked_attention(query, key, value, mask_mod=lambda b, h, q, kv: kv - q)
    with pytest.raises(TypeError, match=r"mask_mod must return a boolean tensor .* got bool"):
        chunked_attention(query, key, value, mask_mod=lambda b, h, q, kv: True)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="random_keys was made for max_len = 3"):
        chunked_attention(query, key, value, mask_mod=random_keys(1, 3))


def test_errors_of_online_softmax() -> None:
    with pytest.raises(ValueError, match="chunks must hold at least one chunk of scores; got none"):
        online_softmax([])
    with pytest.raises(TypeError, match=r"chunks\[1\] must be a floating-point tensor"):
        online_softmax([torch.zeros(2), torch.zeros(2, dtype=torch.long)])
    with pytest.raises(ValueError, match=r"chunks\[0\] must have at least 1 dims"):
        online_softmax([torch.tensor(1.0)])
    with pytest.raises(
        ValueError,
        match=r"chunks\[1\] must have the leading dims of chunks\[0\], \(2,\); got shape \(3, 1\)",
    ):
        online_softmax([torch.zeros(2, 4), torch.zeros(3, 1)])
    with pytest.raises(
        ValueError, match=r"values must hold one chunk per score chunk \(2\); got 1"
    ):
        online_softmax([torch.zeros(2), torch.zeros(1)], [torch.zeros(2, 3)])
    with pytest.raises(
        ValueError,
        match=r"values\[1\] must have shape \(\.\.\., S_t, Ev\) = \(1, 3\); got \(2, 3\)",
    ):
        online_softmax([torch.zeros(2), torch.zeros(1)], [torch.zeros(2, 3), torch.zeros(2, 3)])
    with pytest.raises(TypeError, match=r"values\[0\] must have the dtype of chunks\[0\]"):
        online_softmax([torch.zeros(2)], [torch.zeros(2, 3, dtype=torch.float64)])
