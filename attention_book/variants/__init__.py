"""Part III of the book: variants of attention.

Which keys a query may look at: attention patterns written as FlexAttention mask functions
(:func:`causal`, :func:`sliding_window`, :func:`strided`, :func:`bigbird`, ...), the
attention that uses them (:func:`pattern_attention`, :func:`sliding_window_attention`) and
how far information travels through stacked patterns (:func:`receptive_field`); whether a
query keeps every weight or only a few (:func:`top_k_attention`, :func:`sparsemax`);
whether it looks at one key or at all of them (:func:`gumbel_softmax_attention`,
:func:`sample_attention`, :func:`reinforce_loss`, the pick-one task); where a local window
sits (:class:`LocalAttention`, Luong's local-m and local-p); how far each head looks
(:class:`AdaptiveSpan`) and weights computed from the input itself (:class:`DynamicConv`,
:func:`dynamic_routing`); attention in linear time (:func:`linear_attention`,
:func:`performer_attention`) and exact attention in chunks (:func:`chunked_attention`,
:func:`online_softmax`); and attention between modalities (:class:`PatchEmbedding`,
:func:`clip_loss`, :func:`shapes_data`).

Example:
    >>> from attention_book.variants import draw_pattern, sliding_window
    >>> print(draw_pattern(sliding_window(1), 4))
    █···
    ██··
    ·██·
    ··██
"""

from __future__ import annotations

from attention_book.variants.adaptive import AdaptiveSpan, adaptive_span_attention
from attention_book.variants.chunked import (
    OnlineSoftmax,
    OnlineSoftmaxStep,
    chunked_attention,
    online_softmax,
)
from attention_book.variants.crossmodal import (
    TextToPatchModel,
    TextToPatchOutput,
    clip_logits,
    clip_loss,
)
from attention_book.variants.crossmodal_training import (
    ClipResult,
    TextToPatchResult,
    retrieval_accuracy,
    train_clip,
    train_text_to_patch,
)
from attention_book.variants.dynamic import DynamicConv, RoutingOutput, dynamic_routing, squash
from attention_book.variants.hard import (
    HardSample,
    gumbel_noise,
    gumbel_softmax_attention,
    reinforce_loss,
    sample_attention,
)
from attention_book.variants.linear import (
    FeatureMap,
    LinearAttentionState,
    elu_feature_map,
    linear_attention,
    linear_attention_step,
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
from attention_book.variants.performer import (
    orthogonal_gaussian,
    performer_attention,
    positive_random_features,
)
from attention_book.variants.pick_one import (
    PickOneData,
    PickOneMethod,
    PickOneModel,
    PickOneOutput,
    PickOnePooling,
    pick_one_data,
    pick_one_loss,
)
from attention_book.variants.pick_one_training import PickOneResult, train_pick_one
from attention_book.variants.reach import layers_to_reach, receptive_field
from attention_book.variants.selection import sparsemax, sparsemax_attention, top_k_attention
from attention_book.variants.shapes import ShapesData, brightness_labels, shapes_data
from attention_book.variants.span_task import (
    CopyTaskData,
    SpanModel,
    SpanModelOutput,
    SpanResult,
    copy_task_data,
    train_adaptive_span,
)
from attention_book.variants.sparse_patterns import (
    bigbird,
    fixed,
    global_tokens,
    random_keys,
    strided,
)
from attention_book.variants.towers import ImageTower, PatchEmbedding, TextTower, patchify
from attention_book.variants.windowed import (
    band_to_dense,
    sliding_window_attention,
    window_key_indices,
)

__all__ = [
    "AdaptiveSpan",
    "ClipResult",
    "CopyTaskData",
    "DynamicConv",
    "FeatureMap",
    "HardSample",
    "ImageTower",
    "LinearAttentionState",
    "LocalAttention",
    "LocalPositionName",
    "LocalPositions",
    "LocalScoreName",
    "MaskMod",
    "OnlineSoftmax",
    "OnlineSoftmaxStep",
    "PatchEmbedding",
    "PickOneData",
    "PickOneMethod",
    "PickOneModel",
    "PickOneOutput",
    "PickOnePooling",
    "PickOneResult",
    "RoutingOutput",
    "ShapesData",
    "SpanModel",
    "SpanModelOutput",
    "SpanResult",
    "TextToPatchModel",
    "TextToPatchOutput",
    "TextToPatchResult",
    "TextTower",
    "adaptive_span_attention",
    "band_to_dense",
    "bigbird",
    "blocked_window",
    "brightness_labels",
    "causal",
    "chunked_attention",
    "clip_logits",
    "clip_loss",
    "copy_task_data",
    "dilated_sliding_window",
    "draw_pattern",
    "dynamic_routing",
    "elu_feature_map",
    "fixed",
    "global_tokens",
    "gumbel_noise",
    "gumbel_softmax_attention",
    "layers_to_reach",
    "linear_attention",
    "linear_attention_step",
    "local_positions",
    "mask_density",
    "online_softmax",
    "orthogonal_gaussian",
    "patchify",
    "pattern_attention",
    "performer_attention",
    "pick_one_data",
    "pick_one_loss",
    "positive_random_features",
    "random_keys",
    "receptive_field",
    "reinforce_loss",
    "retrieval_accuracy",
    "sample_attention",
    "shapes_data",
    "sliding_window",
    "sliding_window_attention",
    "sparsemax",
    "sparsemax_attention",
    "squash",
    "strided",
    "top_k_attention",
    "train_adaptive_span",
    "train_clip",
    "train_pick_one",
    "train_text_to_patch",
    "window_key_indices",
]
