r"""Sparse patterns of the Sparse Transformer, Longformer and BigBird, as FlexAttention mask functions.

The strided and fixed patterns of Child et al. (2019), the global tokens of Longformer
(Beltagy et al., 2020) and the random keys of BigBird (Zaheer et al., 2020), and BigBird's
union of window, global and random links. Each is a :data:`~attention_book.variants.MaskMod`
(True = may attend), so it works with PyTorch's ``create_mask``, ``create_block_mask``,
``flex_attention``, ``and_masks`` and ``or_masks`` and with
:func:`~attention_book.variants.pattern_attention`; the local patterns (causal, sliding,
blocked, dilated) live in :mod:`attention_book.variants.patterns`.

Example:
    >>> from attention_book.variants import draw_pattern
    >>> print(draw_pattern(strided(2), 5))
    █····
    ██···
    ███··
    ·███·
    █·███
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import or_masks

from attention_book._checks import check_at_most, check_int
from attention_book.variants.patterns import MaskMod, sliding_window

__all__ = ["bigbird", "fixed", "global_tokens", "random_keys", "strided"]


def strided(stride: int) -> MaskMod:
    r"""Sparse Transformer, strided: the last ``stride`` keys and every ``stride``-th one before.

    .. math::

        m_{ij} = [\, j \le i \,] \wedge
        \big( [\, i - j < \text{stride} \,] \vee [\, (i - j) \bmod \text{stride} = 0 \,] \big)

    Child et al. (2019) split it over two heads (the local part and the strided part); this is
    their union. With ``stride`` near :math:`\sqrt{L}` each query sees about :math:`2\sqrt{L}`
    keys, and every position reaches every earlier one within two layers.

    Args:
        stride: The stride (``1`` or more; ``1`` is :func:`causal`).

    Returns:
        The mask function.

    Raises:
        TypeError: If ``stride`` is not an int.
        ValueError: If ``stride`` is below 1.

    Example:
        >>> from attention_book.variants import draw_pattern
        >>> print(draw_pattern(strided(3), 7))
        █······
        ██·····
        ███····
        ████···
        ·████··
        ··████·
        █··████
    """
    check_int("stride", stride, minimum=1)

    def strided_mask(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        distance = q_idx - kv_idx
        return (distance >= 0) & ((distance < stride) | (distance % stride == 0))

    return strided_mask


def fixed(block: int, num_summary: int = 1) -> MaskMod:
    r"""Sparse Transformer, fixed: its own block and the last ``num_summary`` keys of each block.

    .. math::

        m_{ij} = [\, j \le i \,] \wedge \big( [\, \lfloor j/b \rfloor = \lfloor i/b \rfloor \,]
        \vee [\, j \bmod b \ge b - c \,] \big)

    with block size :math:`b` and :math:`c` = ``num_summary`` (Child et al., 2019). The last
    ``c`` positions of each block act as its summary, which every later query reads.

    Args:
        block: Block size ``b`` (``1`` or more).
        num_summary: Summary keys per block, ``c`` in ``[1, block]``.

    Returns:
        The mask function.

    Raises:
        TypeError: If an argument is not an int.
        ValueError: If ``block`` is below 1 or ``num_summary`` lies outside ``[1, block]``.

    Example:
        >>> from attention_book.variants import draw_pattern
        >>> print(draw_pattern(fixed(3), 7))
        █······
        ██·····
        ███····
        ··██···
        ··███··
        ··████·
        ··█··██
    """
    check_int("block", block, minimum=1)
    check_int("num_summary", num_summary, minimum=1)
    check_at_most("num_summary", num_summary, block, "block")

    def fixed_mask(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        same_block = kv_idx // block == q_idx // block
        summary = kv_idx % block >= block - num_summary
        return (kv_idx <= q_idx) & (same_block | summary)

    return fixed_mask


def global_tokens(indices: Sequence[int]) -> MaskMod:
    r"""The listed positions see every key and every query sees them (Longformer's global tokens).

    .. math::

        m_{ij} = [\, i \in G \,] \vee [\, j \in G \,]

    Combine it with a window by ``or_masks(sliding_window(w, w), global_tokens([0]))``. An
    index beyond the sequence simply has no effect.

    Args:
        indices: The global positions :math:`G` (each ``0`` or more).

    Returns:
        The mask function.

    Raises:
        TypeError: If an index is not an int.
        ValueError: If an index is negative.

    Example:
        >>> from attention_book.variants import draw_pattern
        >>> print(draw_pattern(global_tokens([1]), 4))
        ·█··
        ████
        ·█··
        ·█··
    """
    positions = sorted({check_int(f"indices[{k}]", i, minimum=0) for k, i in enumerate(indices)})

    def global_mask(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        # a Python loop over plain ints: no tensor to keep on the right device
        result = q_idx.new_zeros((), dtype=torch.bool)
        for position in positions:
            result = result | (q_idx == position) | (kv_idx == position)
        return result

    return global_mask


def random_keys(
    num_random: int, max_len: int, *, seed: int = 0, device: torch.device | str | None = None
) -> MaskMod:
    r"""Each query sees ``num_random`` keys drawn at random once (BigBird's random attention).

    .. math::

        m_{ij} = [\, j \in R_i \,], \qquad R_i \subset \{0, \dots, \text{max\_len} - 1\},
        \quad |R_i| = \text{num\_random}

    The sets :math:`R_i` are drawn without replacement when the pattern is made, with a local
    ``torch.Generator`` seeded by ``seed`` (the global random state is untouched), and are the
    same for every batch row and head. The pattern is a lookup table of ``max_len`` queries by
    ``max_len`` keys: a mask asked about a query or key at ``max_len`` or beyond raises
    ``ValueError`` when it is materialised (by ``create_mask``, ``create_block_mask`` or
    :func:`pattern_attention`). ``L == max_len`` works whether or not ``L`` is a multiple of
    ``create_block_mask``'s block size (128): PyTorch (2.13) evaluates the mask on the true
    lengths and pads the resulting block mask with False, and its compiled kernels wrap the
    indices of a partial block back into the sequence.

    Args:
        num_random: Keys per query, in ``[0, max_len]``.
        max_len: The longest sequence the pattern covers (``1`` or more).
        seed: Seed of the local generator.
        device: Where to keep the table (the device of the attention that uses it).

    Returns:
        The mask function.

    Raises:
        TypeError: If a size or the seed is not an int.
        ValueError: If ``max_len`` is below 1, ``num_random`` outside ``[0, max_len]`` or
            ``seed`` negative; the mask function raises ``ValueError`` for positions at
            ``max_len`` or beyond.

    Example:
        >>> from attention_book.variants import draw_pattern
        >>> print(draw_pattern(random_keys(2, 5, seed=1), 5))
        █··█·
        █·█··
        █·█··
        ···██
        ··█·█
    """
    check_int("max_len", max_len, minimum=1)
    check_int("num_random", num_random, minimum=0)
    check_at_most("num_random", num_random, max_len, "max_len")
    check_int("seed", seed, minimum=0)
    generator = torch.Generator().manual_seed(seed)
    # ranking i.i.d. uniform numbers gives each query a uniformly random set of distinct keys
    noise = torch.rand(max_len, max_len, generator=generator)  # (max_len, max_len)
    chosen = noise.topk(num_random, dim=-1).indices  # (max_len, num_random)
    table = torch.zeros(max_len, max_len, dtype=torch.bool).scatter_(-1, chosen, True)
    table = table.to(device)

    def random_mask(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
        try:
            return table.to(q_idx.device)[q_idx, kv_idx]
        except IndexError:
            msg = (
                f"random_keys was made for max_len = {max_len} positions; the mask was asked "
                f"about a query or key at {max_len} or beyond (make it with a larger max_len)"
            )
            raise ValueError(msg) from None

    return random_mask


def bigbird(
    window: int,
    num_global: int,
    num_random: int,
    max_len: int,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> MaskMod:
    r"""BigBird's pattern: a window on both sides, ``num_global`` global tokens, random keys.

    .. math::

        m = \text{window}(w, w) \vee \text{global}(0, \dots, g - 1) \vee \text{random}(r)

    Exactly ``or_masks(sliding_window(window, window), global_tokens(range(num_global)),
    random_keys(num_random, max_len, seed=seed))`` (Zaheer et al., 2020).

    Args:
        window: Keys on each side of the query (``0`` or more).
        num_global: The first ``num_global`` positions are global (``0`` or more).
        num_random: Random keys per query, in ``[0, max_len]``.
        max_len: The longest sequence the random part covers; see :func:`random_keys`.
        seed: Seed of the random part.
        device: Where to keep the random part's table.

    Returns:
        The mask function.

    Raises:
        TypeError: If a size is not an int.
        ValueError: If a size is out of range (see the parts).

    Example:
        >>> from attention_book.variants import draw_pattern
        >>> print(draw_pattern(bigbird(1, 1, 1, 6, seed=0), 6))
        ██████
        ███···
        ████·█
        █·███·
        █·████
        ██··██
    """
    check_int("window", window, minimum=0)
    check_int("num_global", num_global, minimum=0)
    return or_masks(
        sliding_window(window, window),
        global_tokens(range(num_global)),
        random_keys(num_random, max_len, seed=seed, device=device),
    )
