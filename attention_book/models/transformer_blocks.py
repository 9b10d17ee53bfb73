"""Transformer encoder and decoder blocks with PyTorch's layout, built on MultiHeadAttention."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeVar, get_args

import torch.nn.functional as F
from torch import Tensor, nn

from attention_book._checks import check_choice, check_float, check_int, check_ndim, fmt_shape
from attention_book.multihead import MultiHeadAttention
from attention_book.output import AttentionOutput

__all__ = ["ActivationName", "DecoderOutput", "TransformerDecoderBlock", "TransformerEncoderBlock"]

#: The activations of the position-wise feed-forward network: ``"relu"`` or ``"gelu"``.
ActivationName = Literal["relu", "gelu"]

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {"relu": F.relu, "gelu": F.gelu}

_TorchLayer = nn.TransformerEncoderLayer | nn.TransformerDecoderLayer
_Layer = TypeVar("_Layer", nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)


class DecoderOutput(NamedTuple):
    """What a decoder block computes: its output and the weights of its two attentions.

    Attributes:
        output: ``(N, T, E)``.
        self_weights: ``(N, H, T, T)``, masked self-attention over the target.
        cross_weights: ``(N, H, T, S)``, the target positions (queries) attending to the
            encoder's output (keys and values).

    Example:
        >>> import torch
        >>> output, self_weights, cross_weights = DecoderOutput(torch.zeros(1, 2, 4), None, None)
        >>> output.shape
        torch.Size([1, 2, 4])
    """

    output: Tensor
    self_weights: Tensor | None
    cross_weights: Tensor | None


def _check_activation(activation: object) -> ActivationName:
    check_choice("activation", activation, get_args(ActivationName))
    return activation  # type: ignore[return-value]


def _torch_activation(layer: _TorchLayer) -> ActivationName:
    """The name of a PyTorch layer's activation, if this package has it."""
    activation = layer.activation
    if activation is F.relu or isinstance(activation, nn.ReLU):
        return "relu"
    if activation is F.gelu or (
        isinstance(activation, nn.GELU) and activation.approximate == "none"
    ):
        return "gelu"
    msg = f"layer must use the activation relu or gelu (exact); got {activation!r}"
    raise ValueError(msg)


def _check_torch_layer(layer: object, kind: type[_Layer]) -> _Layer:
    if not isinstance(layer, kind):
        msg = f"layer must be an nn.{kind.__name__}; got {type(layer).__name__}"
        raise TypeError(msg)
    return layer


def _torch_options(layer: _TorchLayer) -> dict[str, Any]:
    """The keyword options of a block equivalent to PyTorch's ``layer``."""
    return {
        "dropout": layer.dropout.p,
        "activation": _torch_activation(layer),
        "norm_first": layer.norm_first,
        "bias": layer.linear1.bias is not None,
        "layer_norm_eps": layer.norm1.eps,
    }


def _check_sequence(name: str, value: object, embed_dim: int, rows: str) -> Tensor:
    """Check a float ``(N, rows, embed_dim)`` input of a block; return it."""
    x = check_float(name, value)
    legend = f"(N, {rows}, {embed_dim})"
    check_ndim(name, x, 3, legend)
    if x.shape[-1] != embed_dim:
        msg = f"{name} must have embed_dim = {embed_dim} features {legend}; got shape {fmt_shape(x.shape)}"
        raise ValueError(msg)
    return x


class _TransformerBlock(nn.Module):
    """What both blocks share: self-attention, the feed-forward network, norms and dropouts."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int,
        *,
        dropout: float,
        activation: ActivationName,
        norm_first: bool,
        bias: bool,
        layer_norm_eps: float,
        num_sublayers: int,
    ) -> None:
        super().__init__()
        check_int("ffn_dim", ffn_dim, minimum=1)
        self.activation = _check_activation(activation)
        self.embed_dim, self.num_heads, self.ffn_dim = embed_dim, num_heads, ffn_dim
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(embed_dim, num_heads, dropout=dropout, bias=bias)
        if num_sublayers == 3:
            self.cross_attn = MultiHeadAttention(embed_dim, num_heads, dropout=dropout, bias=bias)
        self.linear1 = nn.Linear(embed_dim, ffn_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, embed_dim, bias=bias)
        for i in range(1, num_sublayers + 1):
            self.add_module(f"norm{i}", nn.LayerNorm(embed_dim, eps=layer_norm_eps, bias=bias))
        for i in range(1, num_sublayers + 1):
            self.add_module(f"dropout{i}", nn.Dropout(dropout))

    def _feed_forward(self, x: Tensor) -> Tensor:
        # (N, L, E) -> (N, L, ffn_dim) -> (N, L, E), the same network at every position
        hidden: Tensor = self.dropout(_ACTIVATIONS[self.activation](self.linear1(x)))
        return self.linear2(hidden)  # type: ignore[no-any-return]

    def _copy_torch_layer(self, layer: _TorchLayer) -> None:
        """Take ``layer``'s device, dtype, mode and weights (built with its options)."""
        reference = layer.linear1.weight
        self.to(device=reference.device, dtype=reference.dtype)
        self.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        names = ["linear1", "linear2", "norm1", "norm2"]
        if isinstance(layer, nn.TransformerDecoderLayer):
            self.cross_attn = MultiHeadAttention.from_torch(layer.multihead_attn)
            names.append("norm3")
        for name in names:
            getattr(self, name).load_state_dict(getattr(layer, name).state_dict())
        self.train(layer.training)

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        return f"activation={self.activation!r}, norm_first={self.norm_first}"


class TransformerEncoderBlock(_TransformerBlock):
    r"""One encoder layer of the Transformer, laid out like ``nn.TransformerEncoderLayer``.

    .. math::

        \text{post-norm:}\quad
        \mathbf Z = \operatorname{LN}_1(\mathbf X + \operatorname{MHA}(\mathbf X)), \quad
        \mathbf Y = \operatorname{LN}_2(\mathbf Z + \operatorname{FFN}(\mathbf Z))

        \text{pre-norm:}\quad
        \mathbf Z = \mathbf X + \operatorname{MHA}(\operatorname{LN}_1(\mathbf X)), \quad
        \mathbf Y = \mathbf Z + \operatorname{FFN}(\operatorname{LN}_2(\mathbf Z))

        \operatorname{FFN}(\mathbf x) = W_2\, \phi(W_1 \mathbf x + \mathbf b_1) + \mathbf b_2

    Every position queries every other (self-attention, :class:`~attention_book.MultiHeadAttention`),
    then the same two-layer network :math:`\operatorname{FFN}` (``linear1``, activation
    :math:`\phi`, ``linear2``) transforms each position on its own. Each of the two
    sublayers sits in a residual connection with layer normalisation (``norm1``,
    ``norm2``): after the addition (post-norm, Vaswani et al. 2017, PyTorch's default) or
    at the sublayer's input (pre-norm, ``norm_first=True``, Xiong et al. 2020). Dropout
    (``dropout1``, ``dropout2`` on each sublayer's output, ``dropout`` inside the network,
    and on the attention weights) acts in training mode only. The submodules have
    PyTorch's names, and :meth:`from_torch` copies a PyTorch layer's weights.

    Args:
        embed_dim: ``E``, features per position.
        num_heads: ``H``; must divide ``embed_dim``.
        ffn_dim: Hidden features of the feed-forward network (``dim_feedforward``).
        dropout: Dropout probability.
        activation: :math:`\phi`, ``"relu"`` or ``"gelu"`` (exact, not the tanh
            approximation).
        norm_first: Pre-norm (True) or post-norm (False).
        bias: Give the linear layers and layer norms a bias.
        layer_norm_eps: The layer norms' :math:`\epsilon`.

    Raises:
        ValueError: If ``embed_dim % num_heads != 0``, a size is smaller than 1,
            ``dropout`` is outside ``[0, 1)`` or ``activation`` is unknown.

    Example:
        >>> import torch
        >>> block = TransformerEncoderBlock(embed_dim=8, num_heads=2, ffn_dim=16)
        >>> x = torch.randn(3, 5, 8)  # (N, L, E)
        >>> output, weights = block(x, valid_lens=torch.tensor([5, 2, 4]))
        >>> output.shape, weights.shape  # (N, L, E) and per-head (N, H, L, L)
        (torch.Size([3, 5, 8]), torch.Size([3, 2, 5, 5]))
        >>> bool((weights[1, :, :, 2:] == 0).all())  # padded keys get weight exactly 0
        True
    """

    norm1: nn.LayerNorm
    norm2: nn.LayerNorm
    dropout1: nn.Dropout
    dropout2: nn.Dropout

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int,
        *,
        dropout: float = 0.0,
        activation: ActivationName = "relu",
        norm_first: bool = False,
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__(
            embed_dim,
            num_heads,
            ffn_dim,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            bias=bias,
            layer_norm_eps=layer_norm_eps,
            num_sublayers=2,
        )

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> TransformerEncoderBlock:
        """Copy the weights of PyTorch's ``nn.TransformerEncoderLayer`` into a new block.

        Afterwards both compute the same output, for either ``batch_first`` (this block is
        always batch first: transpose ``(L, N, E)`` inputs yourself), either
        ``norm_first``, relu or gelu, in training and in eval mode (where PyTorch takes its
        fused fast path). Masks have opposite polarities: PyTorch's
        ``src_key_padding_mask`` ``(N, L)`` is True where a key is *ignored*; pass
        ``valid_lens`` or ``attn_mask=~src_key_padding_mask[:, None, None, :]``.

        Args:
            layer: The PyTorch layer to copy.

        Returns:
            A block on the same device, with the same dtype and train/eval mode.

        Raises:
            TypeError: If ``layer`` is not an ``nn.TransformerEncoderLayer``.
            ValueError: If its activation is neither relu nor exact gelu, or its attention
                uses ``add_bias_kv`` or ``add_zero_attn``.

        Example:
            >>> import torch
            >>> layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
            >>> block = TransformerEncoderBlock.from_torch(layer)
            >>> x = torch.randn(3, 5, 8)
            >>> torch.allclose(block(x).output, layer(x), atol=1e-6)
            True
        """
        layer = _check_torch_layer(layer, nn.TransformerEncoderLayer)
        attention = layer.self_attn
        new = cls(
            attention.embed_dim,
            attention.num_heads,
            layer.linear1.out_features,
            **_torch_options(layer),
        )
        new._copy_torch_layer(layer)
        return new

    def forward(
        self,
        x: Tensor,
        attn_mask: Tensor | None = None,
        *,
        valid_lens: Tensor | None = None,
        is_causal: bool = False,
    ) -> AttentionOutput:
        """Run the block on ``x (N, L, E)``.

        Args:
            x: ``(N, L, embed_dim)``.
            attn_mask: Boolean, True = may attend, as in
                :class:`~attention_book.MultiHeadAttention`: ``(L, L)``, ``(N, L, L)`` or
                ``(N, H, L, L)`` and broadcastable forms.
            valid_lens: Integer ``(N,)``: each sequence's first ``valid_lens`` positions
                are keys; the rest (padding) get weight exactly 0. Padded positions still
                get an output row, which later layers ignore as keys.
            is_causal: Let position ``i`` attend to positions ``0..i`` only.

        Returns:
            :class:`~attention_book.AttentionOutput` with ``output (N, L, E)`` and
            per-head self-attention ``weights (N, H, L, L)``.

        Raises:
            TypeError: If ``x`` is not floating point or the mask is not boolean.
            ValueError: If a shape does not fit.
        """
        x = _check_sequence("x", x, self.embed_dim, "L")
        if self.norm_first:
            h = self.norm1(x)
            attended, weights = self.self_attn(
                h, h, h, attn_mask, valid_lens=valid_lens, is_causal=is_causal
            )
            x = x + self.dropout1(attended)  # (N, L, E)
            x = x + self.dropout2(self._feed_forward(self.norm2(x)))
        else:
            attended, weights = self.self_attn(
                x, x, x, attn_mask, valid_lens=valid_lens, is_causal=is_causal
            )
            x = self.norm1(x + self.dropout1(attended))  # (N, L, E)
            x = self.norm2(x + self.dropout2(self._feed_forward(x)))
        return AttentionOutput(x, weights)


class TransformerDecoderBlock(_TransformerBlock):
    r"""One decoder layer of the Transformer, laid out like ``nn.TransformerDecoderLayer``.

    .. math::

        \mathbf Z_1 = \operatorname{LN}_1(\mathbf X + \operatorname{MHA}_{\text{causal}}(
        \mathbf X, \mathbf X, \mathbf X)), \quad
        \mathbf Z_2 = \operatorname{LN}_2(\mathbf Z_1 + \operatorname{MHA}(\mathbf Z_1,
        \mathbf M, \mathbf M)), \quad
        \mathbf Y = \operatorname{LN}_3(\mathbf Z_2 + \operatorname{FFN}(\mathbf Z_2))

    (post-norm; with ``norm_first=True`` each sublayer reads :math:`\operatorname{LN}_i`
    of its input and adds its output to it, :math:`\mathbf Z = \mathbf X +
    \operatorname{sublayer}(\operatorname{LN}_i(\mathbf X))`.) Three sublayers, each in a
    residual connection: masked self-attention over the target ``x`` (``self_attn``;
    by default causal, so position ``t`` sees the target positions ``0..t``), cross-attention
    (``cross_attn``) whose **queries come from the decoder** and whose keys and values are
    the encoder's output ``memory`` :math:`\mathbf M`, and the feed-forward network
    (``linear1``, ``linear2``). Norms ``norm1..3``, dropouts ``dropout1..3`` as in PyTorch.

    Args:
        embed_dim: ``E``, features per position (of ``x`` and of ``memory``).
        num_heads: ``H``; must divide ``embed_dim``.
        ffn_dim: Hidden features of the feed-forward network.
        dropout: Dropout probability.
        activation: ``"relu"`` or ``"gelu"`` (exact).
        norm_first: Pre-norm (True) or post-norm (False).
        bias: Give the linear layers and layer norms a bias.
        layer_norm_eps: The layer norms' :math:`\epsilon`.

    Raises:
        ValueError: If ``embed_dim % num_heads != 0``, a size is smaller than 1,
            ``dropout`` is outside ``[0, 1)`` or ``activation`` is unknown.

    Example:
        >>> import torch
        >>> block = TransformerDecoderBlock(embed_dim=8, num_heads=2, ffn_dim=16)
        >>> x, memory = torch.randn(2, 4, 8), torch.randn(2, 6, 8)  # (N, T, E), (N, S, E)
        >>> out = block(x, memory, memory_valid_lens=torch.tensor([6, 3]))
        >>> out.output.shape, out.self_weights.shape, out.cross_weights.shape
        (torch.Size([2, 4, 8]), torch.Size([2, 2, 4, 4]), torch.Size([2, 2, 4, 6]))
        >>> (out.self_weights[0, 0] > 0).int()  # causal: target position t sees 0..t
        tensor([[1, 0, 0, 0],
                [1, 1, 0, 0],
                [1, 1, 1, 0],
                [1, 1, 1, 1]], dtype=torch.int32)
    """

    cross_attn: MultiHeadAttention
    norm1: nn.LayerNorm
    norm2: nn.LayerNorm
    norm3: nn.LayerNorm
    dropout1: nn.Dropout
    dropout2: nn.Dropout
    dropout3: nn.Dropout

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        ffn_dim: int,
        *,
        dropout: float = 0.0,
        activation: ActivationName = "relu",
        norm_first: bool = False,
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
    ) -> None:
        super().__init__(
            embed_dim,
            num_heads,
            ffn_dim,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            bias=bias,
            layer_norm_eps=layer_norm_eps,
            num_sublayers=3,
        )

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> TransformerDecoderBlock:
        """Copy the weights of PyTorch's ``nn.TransformerDecoderLayer`` into a new block.

        Afterwards both compute the same output (either ``batch_first``, either
        ``norm_first``, relu or gelu, training or eval). PyTorch's ``multihead_attn``
        becomes ``cross_attn``. Masks: PyTorch's ``tgt_mask`` and key padding masks are
        True where attention is *forbidden*; its causal ``tgt_mask`` is this block's
        default ``is_causal=True``, and ``memory_key_padding_mask`` ``(N, S)`` is
        ``memory_valid_lens`` or ``memory_mask=~memory_key_padding_mask[:, None, None, :]``.

        Args:
            layer: The PyTorch layer to copy.

        Returns:
            A block on the same device, with the same dtype and train/eval mode.

        Raises:
            TypeError: If ``layer`` is not an ``nn.TransformerDecoderLayer``.
            ValueError: If its activation is neither relu nor exact gelu, or an attention
                uses ``add_bias_kv`` or ``add_zero_attn``.

        Example:
            >>> import torch
            >>> layer = nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
            >>> block = TransformerDecoderBlock.from_torch(layer)
            >>> x, memory = torch.randn(3, 4, 8), torch.randn(3, 6, 8)
            >>> causal = nn.Transformer.generate_square_subsequent_mask(4)  # -inf = forbidden
            >>> expected = layer(x, memory, tgt_mask=causal, tgt_is_causal=True)
            >>> torch.allclose(block(x, memory).output, expected, atol=1e-6)
            True
        """
        layer = _check_torch_layer(layer, nn.TransformerDecoderLayer)
        attention = layer.self_attn
        new = cls(
            attention.embed_dim,
            attention.num_heads,
            layer.linear1.out_features,
            **_torch_options(layer),
        )
        new._copy_torch_layer(layer)
        return new

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        attn_mask: Tensor | None = None,
        *,
        valid_lens: Tensor | None = None,
        is_causal: bool = True,
        memory_mask: Tensor | None = None,
        memory_valid_lens: Tensor | None = None,
    ) -> DecoderOutput:
        """Run the block on the target ``x (N, T, E)``, attending to ``memory (N, S, E)``.

        Args:
            x: ``(N, T, embed_dim)``, the target so far (queries of both attentions).
            memory: ``(N, S, embed_dim)``, the encoder's output (keys and values of the
                cross-attention).
            attn_mask: Boolean self-attention mask, True = may attend, ``(T, T)``,
                ``(N, T, T)`` or ``(N, H, T, T)``; combined with ``is_causal`` by AND.
            valid_lens: Integer ``(N,)``: number of target positions each sequence's
                queries may see as keys.
            is_causal: Let target position ``t`` see positions ``0..t`` only (top-left
                aligned), as teacher forcing needs.
            memory_mask: Boolean cross-attention mask, True = may attend, ``(T, S)``,
                ``(N, T, S)`` or ``(N, H, T, S)``.
            memory_valid_lens: Integer ``(N,)``: number of source positions that are not
                padding; the others get cross-attention weight exactly 0.

        Returns:
            :class:`DecoderOutput` with ``output (N, T, E)``, ``self_weights (N, H, T, T)``
            and ``cross_weights (N, H, T, S)``.

        Raises:
            TypeError: If an input is not floating point or a mask is not boolean.
            ValueError: If a shape does not fit.
        """
        x = _check_sequence("x", x, self.embed_dim, "T")
        memory = _check_sequence("memory", memory, self.embed_dim, "S")
        if memory.shape[:-2] != x.shape[:-2]:
            msg = (
                f"memory must have the batch dims of x (N, T, E) = {fmt_shape(x.shape)}; "
                f"got shape {fmt_shape(memory.shape)}"
            )
            raise ValueError(msg)

        def self_attention(h: Tensor) -> AttentionOutput:
            result: AttentionOutput = self.self_attn(
                h, h, h, attn_mask, valid_lens=valid_lens, is_causal=is_causal
            )
            return result

        def cross_attention(h: Tensor) -> AttentionOutput:
            # queries from the decoder (N, T, E); keys and values from the encoder (N, S, E)
            result: AttentionOutput = self.cross_attn(
                h, memory, memory, memory_mask, valid_lens=memory_valid_lens
            )
            return result

        if self.norm_first:
            attended, self_weights = self_attention(self.norm1(x))
            x = x + self.dropout1(attended)  # (N, T, E)
            attended, cross_weights = cross_attention(self.norm2(x))
            x = x + self.dropout2(attended)
            x = x + self.dropout3(self._feed_forward(self.norm3(x)))
        else:
            attended, self_weights = self_attention(x)
            x = self.norm1(x + self.dropout1(attended))  # (N, T, E)
            attended, cross_weights = cross_attention(x)
            x = self.norm2(x + self.dropout2(attended))
            x = self.norm3(x + self.dropout3(self._feed_forward(x)))
        return DecoderOutput(x, self_weights, cross_weights)
