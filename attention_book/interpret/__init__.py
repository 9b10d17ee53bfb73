"""Part IV of the book: seeing attention.

Where a model looks, and whether that explains anything: attention rollout and attention
flow through the layers (:func:`attention_rollout`, :func:`attention_flow`, the latter with
the optional ``networkx``), gradient attribution to compare them with
(:func:`integrated_gradients`, :func:`gradient_times_input`, :func:`grad_cam`), and views
of the weights: an interactive one that works offline in the book, in Jupyter and in a
plain HTML file (:func:`attention_view`) and a static one for print (:func:`token_heatmap`).

Example:
    >>> import torch
    >>> from attention_book.interpret import attention_rollout
    >>> weights = [torch.full((1, 2, 3, 3), 1 / 3), torch.eye(3).expand(1, 2, 3, 3)]
    >>> attention_rollout(weights).sum(dim=-1)  # rows still sum to 1
    tensor([[1., 1., 1.]])
"""

from __future__ import annotations

from attention_book.interpret.attribution import (
    grad_cam,
    gradient_times_input,
    integrated_gradients,
)
from attention_book.interpret.heatmap import token_heatmap
from attention_book.interpret.rollout import HeadFusion, attention_flow, attention_rollout
from attention_book.interpret.view import AttentionView, attention_view

__all__ = [
    "AttentionView",
    "HeadFusion",
    "attention_flow",
    "attention_rollout",
    "attention_view",
    "grad_cam",
    "gradient_times_input",
    "integrated_gradients",
    "token_heatmap",
]
