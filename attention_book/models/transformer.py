"""A small encoder-decoder Transformer for the book's translation task."""

from __future__ import annotations

import math
from typing import NamedTuple

from torch import Tensor, nn

from attention_book._checks import (
    check_float,
    check_int,
    check_lengths,
    check_ndim,
    check_probability,
    check_token_ids,
    fmt_shape,
)
from attention_book.models.transformer_blocks import (
    TransformerDecoderBlock,
    TransformerEncoderBlock,
)
from attention_book.positional import PositionalEncoding

__all__ = ["Transformer", "TransformerOutput"]


class TransformerOutput(NamedTuple):
    """What the Transformer computes with teacher forcing: logits and every attention's weights.

    Attributes:
        logits: ``(N, T, V)``, scores of the next target token at each target position.
        encoder_weights: One ``(N, H, S, S)`` tensor per encoder layer: source positions
            attending to source positions.
        decoder_self_weights: One ``(N, H, T, T)`` tensor per decoder layer, causal.
        cross_weights: One ``(N, H, T, S)`` tensor per decoder layer: target positions
            (queries) attending to the encoder's output (keys).

    Example:
        >>> import torch
        >>> output = TransformerOutput(torch.zeros(1, 2, 5), [], [], [])
        >>> output.logits.shape, len(output.cross_weights)
        (torch.Size([1, 2, 5]), 0)
    """

    logits: Tensor
    encoder_weights: list[Tensor]
    decoder_self_weights: list[Tensor]
    cross_weights: list[Tensor]


def _check_length(name: str, ids: Tensor, max_len: int, legend: str) -> None:
    if ids.shape[1] > max_len:
        msg = f"{name} must have at most max_len = {max_len} positions {legend}; got {ids.shape[1]}"
        raise ValueError(msg)


class Transformer(nn.Module):
    r"""The encoder-decoder Transformer of Vaswani et al. (2017), small enough for a CPU.

    .. math::

        \mathbf X_0 = \sqrt{E}\, \operatorname{Emb}_{\text{src}}(\mathbf x) + \mathbf P,
        \quad \mathbf M = \operatorname{Enc}_{N_e} \circ \dots \circ
        \operatorname{Enc}_1(\mathbf X_0)

        \mathbf Y_0 = \sqrt{E}\, \operatorname{Emb}_{\text{tgt}}(\mathbf y_{<t}) + \mathbf P,
        \quad \text{logits} = W_{\text{out}}\, \operatorname{Dec}_{N_d}(\dots
        \operatorname{Dec}_1(\mathbf Y_0, \mathbf M) \dots, \mathbf M)

    Token embeddings (``src_embedding``, ``tgt_embedding``, initialised from
    :math:`\mathcal N(0, 1/E)`) are scaled by :math:`\sqrt E`, as in the paper, so that
    each feature has unit variance like the sinusoidal positions
    (:class:`~attention_book.PositionalEncoding`, ``positional``, shared by both sides)
    that are added to them. A stack of :class:`TransformerEncoderBlock` (``encoder_layers``)
    turns the source into the memory :math:`\mathbf M`; a stack of
    :class:`TransformerDecoderBlock` (``decoder_layers``) reads the target so far and
    attends to :math:`\mathbf M`; a linear layer (``output``) gives the logits. With
    ``norm_first=True`` (pre-norm) each stack ends with a LayerNorm (``encoder_norm``,
    ``decoder_norm``), as ``nn.Transformer`` does, because pre-norm blocks leave their
    output un-normalised; post-norm blocks already end with one, so there it is the
    identity (``nn.Transformer`` adds it to both variants).

    Masks: encoder self-attention and cross-attention see the first ``src_lens`` source
    positions only; padded source keys get weight exactly 0, so extra padding changes no
    logit. Decoder self-attention is causal (target position ``t`` sees ``0..t``), so
    padding after ``eos`` in ``tgt_in`` changes nothing at earlier positions. The special
    ids are those of every vocabulary in the package (``pad`` 0, ``bos`` 1, ``eos`` 2).

    Args:
        src_vocab_size: Number of source token ids.
        tgt_vocab_size: ``V``, number of target token ids.
        embed_dim: ``E``, features per position.
        num_heads: ``H``; must divide ``embed_dim``.
        ffn_dim: Hidden features of each block's feed-forward network.
        num_encoder_layers: Encoder blocks.
        num_decoder_layers: Decoder blocks.
        dropout: Dropout probability (after the positions, in every block).
        max_len: Longest source or target sequence.
        norm_first: Pre-norm blocks (True) or post-norm blocks, as in the paper (False).

    Raises:
        ValueError: If a size is smaller than 1, ``embed_dim % num_heads != 0`` or
            ``dropout`` is outside ``[0, 1)``.

    Example:
        >>> import torch
        >>> model = Transformer(10, 12, embed_dim=8, num_heads=2, ffn_dim=16)
        >>> src, src_lens = torch.tensor([[4, 5, 2], [6, 2, 0]]), torch.tensor([3, 2])
        >>> tgt_in = torch.tensor([[1, 7, 8, 9], [1, 3, 0, 0]])  # bos, words, pad
        >>> out = model(src, src_lens, tgt_in)
        >>> out.logits.shape, out.cross_weights[-1].shape  # (N, T, V), (N, H, T, S)
        (torch.Size([2, 4, 12]), torch.Size([2, 2, 4, 3]))
        >>> bool((out.cross_weights[0][1, :, :, 2] == 0).all())  # the padded source key
        True
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        *,
        embed_dim: int = 32,
        num_heads: int = 4,
        ffn_dim: int = 64,
        num_encoder_layers: int = 2,
        num_decoder_layers: int = 2,
        dropout: float = 0.0,
        max_len: int = 64,
        norm_first: bool = False,
    ) -> None:
        super().__init__()
        for name, size in (
            ("src_vocab_size", src_vocab_size),
            ("tgt_vocab_size", tgt_vocab_size),
            ("embed_dim", embed_dim),
            ("num_encoder_layers", num_encoder_layers),
            ("num_decoder_layers", num_decoder_layers),
            ("max_len", max_len),
        ):
            check_int(name, size, minimum=1)
        check_probability("dropout", dropout)
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.embed_dim, self.max_len, self.norm_first = embed_dim, max_len, norm_first
        options = {"dropout": dropout, "norm_first": norm_first}
        self.encoder_layers = nn.ModuleList(
            TransformerEncoderBlock(embed_dim, num_heads, ffn_dim, **options)  # type: ignore[arg-type]
            for _ in range(num_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            TransformerDecoderBlock(embed_dim, num_heads, ffn_dim, **options)  # type: ignore[arg-type]
            for _ in range(num_decoder_layers)
        )
        self.src_embedding = nn.Embedding(src_vocab_size, embed_dim)
        self.tgt_embedding = nn.Embedding(tgt_vocab_size, embed_dim)
        for embedding in (self.src_embedding, self.tgt_embedding):
            nn.init.normal_(embedding.weight, std=embed_dim**-0.5)
        self.positional = PositionalEncoding(embed_dim, dropout, max_len)
        self.encoder_norm: nn.Module = nn.LayerNorm(embed_dim) if norm_first else nn.Identity()
        self.decoder_norm: nn.Module = nn.LayerNorm(embed_dim) if norm_first else nn.Identity()
        self.output = nn.Linear(embed_dim, tgt_vocab_size)

    def _embed(self, embedding: nn.Embedding, ids: Tensor) -> Tensor:
        # (N, L) -> (N, L, E), scaled by sqrt(E), plus positions 0..L-1
        encoded: Tensor = self.positional(embedding(ids) * math.sqrt(self.embed_dim))
        return encoded

    def encode(self, src: Tensor, src_lens: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Run the encoder: the memory ``(N, S, E)`` and each layer's weights ``(N, H, S, S)``.

        Args:
            src: ``(N, S)`` source ids.
            src_lens: ``(N,)`` source lengths in ``[1, S]``.

        Returns:
            ``(memory, encoder_weights)``; rows of ``memory`` beyond ``src_lens`` are
            computed but never attended to.

        Raises:
            TypeError: If an input is not an integer tensor.
            ValueError: If an id or length is out of range or ``S > max_len``.
        """
        src = check_token_ids("src", src, self.src_vocab_size, "(N, S)")
        _check_length("src", src, self.max_len, "(N, S)")
        src_lens = check_lengths("src_lens", src_lens, src.shape[0], src.shape[1])
        x = self._embed(self.src_embedding, src)  # (N, S) -> (N, S, E)
        weights: list[Tensor] = []
        for layer in self.encoder_layers:
            x, layer_weights = layer(x, valid_lens=src_lens)  # padded keys get weight 0
            weights.append(layer_weights)
        memory: Tensor = self.encoder_norm(x)
        return memory, weights

    def decode(
        self, tgt_in: Tensor, memory: Tensor, src_lens: Tensor
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Run the decoder on ``tgt_in (N, T)`` against ``memory (N, S, E)``.

        Args:
            tgt_in: ``(N, T)`` target ids, ``bos`` first (teacher forcing).
            memory: ``(N, S, E)`` from :meth:`encode`.
            src_lens: ``(N,)`` source lengths: cross-attention sees these memory rows only.

        Returns:
            ``(logits (N, T, V), self_weights, cross_weights)``, one ``(N, H, T, T)`` and
            one ``(N, H, T, S)`` tensor per layer.

        Raises:
            TypeError: If an input has the wrong dtype.
            ValueError: If an id or length is out of range, the batch sizes differ or
                ``T > max_len``.
        """
        memory = check_float("memory", memory)
        check_ndim("memory", memory, 3, f"(N, S, {self.embed_dim})")
        batch = memory.shape[0]
        tgt_in = check_token_ids("tgt_in", tgt_in, self.tgt_vocab_size, f"(N, T) = ({batch}, T)")
        if tgt_in.shape[0] != batch:
            msg = (
                f"tgt_in must have shape (N, T) = ({batch}, T); got shape {fmt_shape(tgt_in.shape)}"
            )
            raise ValueError(msg)
        _check_length("tgt_in", tgt_in, self.max_len, "(N, T)")
        src_lens = check_lengths("src_lens", src_lens, batch, memory.shape[1])
        y = self._embed(self.tgt_embedding, tgt_in)  # (N, T) -> (N, T, E)
        self_weights: list[Tensor] = []
        cross_weights: list[Tensor] = []
        for layer in self.decoder_layers:
            y, layer_self, layer_cross = layer(
                y, memory, is_causal=True, memory_valid_lens=src_lens
            )
            self_weights.append(layer_self)
            cross_weights.append(layer_cross)
        logits: Tensor = self.output(self.decoder_norm(y))  # (N, T, E) -> (N, T, V)
        return logits, self_weights, cross_weights

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> TransformerOutput:
        """Teacher forcing: the logits of every next target token, and all the weights.

        Args:
            src: ``(N, S)`` int64 source ids, padded beyond ``src_lens``.
            src_lens: ``(N,)`` source lengths in ``[1, S]``.
            tgt_in: ``(N, T)`` int64 target ids starting with ``bos`` (the target shifted
                right); padding after ``eos`` is allowed.

        Returns:
            :class:`TransformerOutput` with ``logits (N, T, V)``, ``encoder_weights``
            (one ``(N, H, S, S)`` per layer), ``decoder_self_weights`` (``(N, H, T, T)``)
            and ``cross_weights`` (``(N, H, T, S)``).

        Raises:
            TypeError: If an input is not an integer tensor.
            ValueError: If an id is negative or not below its vocabulary size, a length is
                outside ``[1, S]``, the batch sizes differ or a sequence is longer than
                ``max_len``.
        """
        src = check_token_ids("src", src, self.src_vocab_size, "(N, S)")
        tgt_in = check_token_ids("tgt_in", tgt_in, self.tgt_vocab_size, "(N, T)")
        if tgt_in.shape[0] != src.shape[0]:
            msg = (
                f"tgt_in must have the batch size of src, (N, T) = ({src.shape[0]}, T); "
                f"got shape {fmt_shape(tgt_in.shape)}"
            )
            raise ValueError(msg)
        memory, encoder_weights = self.encode(src, src_lens)
        logits, self_weights, cross_weights = self.decode(tgt_in, memory, src_lens)
        return TransformerOutput(logits, encoder_weights, self_weights, cross_weights)

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        return f"max_len={self.max_len}, norm_first={self.norm_first}"
