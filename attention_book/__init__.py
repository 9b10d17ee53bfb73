"""attention_book: attention mechanisms, explained and tested against PyTorch.

Conventions, stated once for the whole package:

Shapes follow PyTorch. ``N`` is the batch (any number of leading batch dims ``...`` are
allowed wherever a batch dim is), ``L`` the number of queries, ``S`` the number of keys and
values, ``E`` the query/key features, ``Ev`` the value features and ``H`` the heads.

Masks: a boolean ``attn_mask`` means **True = may attend**, exactly as in
:func:`torch.nn.functional.scaled_dot_product_attention`, and broadcasts to the scores'
shape ``(..., L, S)``. ``valid_lens``, the book's convenience form, counts the leading keys
each batch row (shape ``(N,)``) or each query (shape ``(N, L)``) may see; its values lie in
``[0, S]``; it refers to the leading batch dim ``N`` and broadcasts over every dim between
``N`` and ``L`` (heads, for example). ``attn_mask``, ``valid_lens`` and ``is_causal`` may be
given together: they combine with AND. A masked position gets weight exactly 0, and a query
with no key to attend to gets all-zero weights and a zero output, never NaN. (PyTorch's
``nn.MultiheadAttention`` ``key_padding_mask`` has the opposite polarity, True = ignore.)

Results: every attention function and module returns :class:`AttentionOutput`
``(output, weights)``, with the weights that were applied to the values (after dropout), so
``output == weights @ value``. Nothing is stored on modules.

Devices: :func:`get_device` picks CUDA, then MPS, then the CPU; the environment variable
``ATTENTION_BOOK_DEVICE`` overrides it, and an absent accelerator falls back to the CPU
with a warning. Everything runs on the CPU; a GPU only makes it faster.

Example:
    >>> import torch
    >>> from attention_book import masked_softmax
    >>> masked_softmax(torch.zeros(1, 3), torch.tensor([True, True, False]))
    tensor([[0.5000, 0.5000, 0.0000]])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version

from torch import Tensor

from attention_book import device as _device
from attention_book import pooling as _pooling
from attention_book.additive import AdditiveAttention
from attention_book.data import KernelRegressionData, kernel_regression_data, true_function
from attention_book.device import get_device
from attention_book.masking import causal_mask, masked_softmax, valid_lens_to_mask
from attention_book.multihead import MultiHeadAttention
from attention_book.output import AttentionOutput
from attention_book.parametric import NadarayaWatsonRegression, leave_one_out, train_nadaraya_watson
from attention_book.plotting import plot_kernel_regression, show_heatmaps
from attention_book.pooling import (
    KernelName,
    boxcar_kernel,
    epanechnikov_kernel,
    gaussian_kernel,
    nadaraya_watson,
    triangular_kernel,
)
from attention_book.positional import (
    LearnedPositionalEmbedding,
    PositionalEncoding,
    RotaryEmbedding,
    rotary_embedding,
    sinusoidal_positions,
)
from attention_book.scoring import DotProductAttention, scaled_dot_product_attention

#: Name of the environment variable that overrides every other choice of device:
#: ``ATTENTION_BOOK_DEVICE`` (see :func:`get_device`).
DEVICE_ENV_VAR: str = _device.DEVICE_ENV_VAR

#: The four named kernels by the name :func:`nadaraya_watson` accepts:
#: ``"gaussian"``, ``"boxcar"``, ``"epanechnikov"`` and ``"triangular"``.
KERNELS: Mapping[str, Callable[[Tensor], Tensor]] = _pooling.KERNELS

try:
    __version__ = version("attention_book")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.1.0"

__all__ = [
    "DEVICE_ENV_VAR",
    "KERNELS",
    "AdditiveAttention",
    "AttentionOutput",
    "DotProductAttention",
    "KernelName",
    "KernelRegressionData",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "NadarayaWatsonRegression",
    "PositionalEncoding",
    "RotaryEmbedding",
    "__version__",
    "boxcar_kernel",
    "causal_mask",
    "epanechnikov_kernel",
    "gaussian_kernel",
    "get_device",
    "kernel_regression_data",
    "leave_one_out",
    "masked_softmax",
    "nadaraya_watson",
    "plot_kernel_regression",
    "rotary_embedding",
    "scaled_dot_product_attention",
    "show_heatmaps",
    "sinusoidal_positions",
    "train_nadaraya_watson",
    "triangular_kernel",
    "true_function",
    "valid_lens_to_mask",
]
