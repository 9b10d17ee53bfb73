"""Part III of the book: variants of attention.

Which keys a query may look at: attention patterns written as FlexAttention mask functions
(:func:`causal`, :func:`sliding_window`, :func:`strided`, :func:`bigbird`, ...), the
attention that uses them (:func:`pattern_attention`, :func:`sliding_window_attention`) and
how far information travels through stacked patterns (:func:`receptive_field`); whether a
query keeps every weight or only a few (:func:`top_k_attention`, :func:`sparsemax`); whether
it looks at one key or at all of them (:func:`gumbel_softmax_attention`,
:func:`sample_attention`, :func:`reinforce_loss`, the pick-one task); and where a local
window sits (:class:`LocalAttention`, Luong's local-m and local-p).

Example:
    >>> from attention_book.variants import draw_pattern, sliding_window
    >>> print(draw_pattern(sliding_window(1), 4))
    █···
    ██··
    ·██·
    ··██
"""

from __future__ import annotations

from attention_book.variants.hard import (
    HardSample,
    gumbel_noise,
    gumbel_softmax_attention,
    reinforce_loss,
    sample_attention,
)
from attention_book.variants.local import (
    LocalAttention,
    LocalPositionName,
    LocalPositions,
    LocalScoreName,
    local_positions,
)
from attention_book.variants.patterns import (
    MaskMod,
    blocked_window,
    causal,
    dilated_sliding_window,
    draw_pattern,
    mask_density,
    pattern_attention,
    sliding_window,
)
from attention_book.variants.pick_one import (
    PickOneData,
    PickOneMethod,
    PickOneModel,
    PickOneOutput,
    PickOnePooling,
    PickOneResult,
    pick_one_data,
    pick_one_loss,
    train_pick_one,
)
from attention_book.variants.reach import layers_to_reach, receptive_field
from attention_book.variants.selection import sparsemax, sparsemax_attention, top_k_attention
from attention_book.variants.sparse_patterns import (
    bigbird,
    fixed,
    global_tokens,
    random_keys,
    strided,
)
from attention_book.variants.windowed import (
    band_to_dense,
    sliding_window_attention,
    window_key_indices,
)

__all__ = [
    "HardSample",
    "LocalAttention",
    "LocalPositionName",
    "LocalPositions",
    "LocalScoreName",
    "MaskMod",
    "PickOneData",
    "PickOneMethod",
    "PickOneModel",
    "PickOneOutput",
    "PickOnePooling",
    "PickOneResult",
    "band_to_dense",
    "bigbird",
    "blocked_window",
    "causal",
    "dilated_sliding_window",
    "draw_pattern",
    "fixed",
    "global_tokens",
    "gumbel_noise",
    "gumbel_softmax_attention",
    "layers_to_reach",
    "local_positions",
    "mask_density",
    "pattern_attention",
    "pick_one_data",
    "pick_one_loss",
    "random_keys",
    "receptive_field",
    "reinforce_loss",
    "sample_attention",
    "sliding_window",
    "sliding_window_attention",
    "sparsemax",
    "sparsemax_attention",
    "strided",
    "top_k_attention",
    "train_pick_one",
    "window_key_indices",
]
