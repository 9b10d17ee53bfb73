"""An RNN encoder-decoder with attention: Bahdanau's and Luong's decoders in one class.

Shapes: ``N`` batch, ``S`` source positions, ``T`` target steps, ``V`` vocabulary size,
``E`` embedding features, ``H`` the decoder's hidden size, ``D`` the encoder's output
features (``encoder_size``: ``2 * hidden_size`` of a bidirectional encoder).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple, cast, get_args

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attention_book._checks import (
    check_choice,
    check_float,
    check_int,
    check_lengths,
    check_probability,
    check_token_ids,
    fmt_shape,
)
from attention_book.additive import AdditiveAttention
from attention_book.masking import masked_softmax, valid_lens_to_mask

__all__ = [
    "AttentionDecoder",
    "QueryName",
    "ScoreName",
    "Seq2Seq",
    "Seq2SeqEncoder",
    "Seq2SeqOutput",
]

#: The scoring functions of :class:`AttentionDecoder`.
ScoreName = Literal["additive", "dot", "general", "concat"]
#: Which decoder state queries the encoder: Bahdanau's ``"previous"``, Luong's ``"current"``.
QueryName = Literal["previous", "current"]


class Seq2SeqOutput(NamedTuple):
    """What an encoder-decoder computes under teacher forcing.

    Attributes:
        logits: ``(N, T, V)``, the scores of the next token at every target step.
        weights: ``(N, T, S)``, the attention weights of each step over the source positions
            (0 beyond each source's length; rows sum to 1 with the built-in scores);
            ``None`` without attention.

    Example:
        >>> logits, weights = Seq2SeqOutput(torch.zeros(1, 2, 5), None)
        >>> logits.shape, weights
        (torch.Size([1, 2, 5]), None)
    """

    logits: Tensor
    weights: Tensor | None


class Seq2SeqEncoder(nn.Module):
    r"""A GRU encoder: one state per source token, and the final state.

    .. math::

        \mathbf h_j = [\overrightarrow{\mathbf h}_j; \overleftarrow{\mathbf h}_j],
        \qquad \overrightarrow{\mathbf h}_j = \operatorname{GRU}(\mathbf e(x_j),
        \overrightarrow{\mathbf h}_{j-1}),
        \quad \overleftarrow{\mathbf h}_j = \operatorname{GRU}(\mathbf e(x_j),
        \overleftarrow{\mathbf h}_{j+1})

    The sequences are packed, so padding beyond ``src_lens`` changes nothing: the backward
    direction starts at each sentence's last real token, and the outputs at padded
    positions are 0.

    Args:
        vocab_size: Size of the source vocabulary.
        embed_dim: ``E``, features of a token embedding.
        hidden_size: Features of the GRU's state per direction.
        num_layers: Stacked GRU layers.
        bidirectional: Read the sentence both ways; the outputs then have
            ``2 * hidden_size`` features.
        dropout: Probability of dropping embedding features (and, with several layers,
            features between layers) in training.

    Raises:
        ValueError: If a size is smaller than 1 or ``dropout`` is outside ``[0, 1)``.

    Example:
        >>> encoder = Seq2SeqEncoder(vocab_size=10, embed_dim=8, hidden_size=16)
        >>> outputs, state = encoder(torch.tensor([[4, 5, 2], [6, 2, 0]]), torch.tensor([3, 2]))
        >>> outputs.shape, state.shape, encoder.output_size  # (N, S, D), (layers, N, D)
        (torch.Size([2, 3, 32]), torch.Size([1, 2, 32]), 32)
        >>> bool((outputs[1, 2] == 0).all())  # a padded position
        True
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, size in (
            ("vocab_size", vocab_size),
            ("embed_dim", embed_dim),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            check_int(name, size, minimum=1)
        check_probability("dropout", dropout)
        self.vocab_size, self.num_layers = vocab_size, num_layers
        self.num_directions = 2 if bidirectional else 1
        #: ``D``, the features of each output: ``hidden_size`` times the directions.
        self.output_size = self.num_directions * hidden_size
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.rnn = nn.GRU(
            embed_dim,
            hidden_size,
            num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,  # GRU drops only between layers
        )

    def forward(self, src: Tensor, src_lens: Tensor) -> tuple[Tensor, Tensor]:
        """Encode ``src (N, S)`` of lengths ``src_lens (N,)``.

        Returns:
            ``(outputs, state)``: ``outputs (N, S, D)``, one state per source position (0 at
            padded positions), and ``state (num_layers, N, D)``, each layer's final state
            (for a bidirectional GRU: the forward direction after the last real token
            concatenated with the backward direction after the first).

        Raises:
            TypeError: If ``src`` or ``src_lens`` is not an integer tensor.
            ValueError: If an id lies outside ``[0, vocab_size)`` or a length outside
                ``[1, S]``.
        """
        src = check_token_ids("src", src, self.vocab_size, "(N, S)")
        batch, num_src = src.shape
        src_lens = check_lengths("src_lens", src_lens, batch, num_src)
        x = self.dropout(self.embedding(src))  # (N, S) -> (N, S, E)
        packed = pack_padded_sequence(x, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        packed_outputs, state = self.rnn(packed)
        # -> (N, S, D), zeros beyond each length
        outputs, _ = pad_packed_sequence(packed_outputs, batch_first=True, total_length=num_src)
        # (layers * dirs, N, H) -> (layers, dirs, N, H) -> (layers, N, dirs, H) -> (layers, N, D)
        state = state.reshape(self.num_layers, self.num_directions, batch, -1)
        state = state.permute(0, 2, 1, 3).reshape(self.num_layers, batch, self.output_size)
        return outputs, state


class _Attention(nn.Module):
    """Score the encoder states against a query, masked softmax, weighted sum of the states.

    ``prepare`` runs once per sentence (the keys' projections do not depend on the step),
    ``forward`` once per step (or once for all steps when the queries are known at once).
    """

    def __init__(self, score: ScoreName, query_size: int, key_size: int) -> None:
        super().__init__()
        self.score = score
        if score == "additive":  # v^T tanh(W_q s + W_k h)
            self.additive = AdditiveAttention(query_size, key_size, query_size)
        elif score == "general":  # s^T W_a h
            self.W_a = nn.Linear(key_size, query_size, bias=False)
        elif score == "concat":  # v_a^T tanh(W_a [s; h])
            self.W_a = nn.Linear(query_size + key_size, query_size, bias=False)
            self.v_a = nn.Linear(query_size, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        """Project the keys ``(N, S, D)`` once per sentence where the score allows it."""
        projected: Tensor = keys
        if self.score == "additive":
            projected = self.additive.W_k(keys)  # (N, S, D) -> (N, S, H)
        elif self.score == "general":
            projected = self.W_a(keys)  # (N, S, D) -> (N, S, H)
        return projected

    def forward(
        self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Attend from ``query (N, L, H)``; return ``context (N, L, D)`` and ``weights (N, L, S)``."""
        if self.score == "additive":
            q = self.additive.W_q(query)  # (N, L, H) -> (N, L, H)
            features = torch.tanh(q[:, :, None] + keys[:, None])  # -> (N, L, S, H)
            scores = self.additive.w_v(features).squeeze(-1)  # -> (N, L, S)
        elif self.score == "concat":
            num_queries, num_keys = query.shape[1], keys.shape[1]
            pairs = torch.cat(  # (N, L, S, H + D): [s; h] for every pair
                [
                    query[:, :, None].expand(-1, -1, num_keys, -1),
                    keys[:, None].expand(-1, num_queries, -1, -1),
                ],
                dim=-1,
            )
            scores = self.v_a(torch.tanh(self.W_a(pairs))).squeeze(-1)  # -> (N, L, S)
        else:  # dot, or general with the keys already multiplied by W_a
            scores = query @ keys.transpose(1, 2)  # (N, L, H) @ (N, H, S) -> (N, L, S)
        weights = masked_softmax(scores, mask)  # (N, L, S); mask (N, 1, S)
        return weights @ values, weights  # (N, L, S) @ (N, S, D) -> (N, L, D)


def _check_custom_attention(attention: object, score: object, query: object) -> None:
    """Check an ``attention=`` module of :class:`AttentionDecoder` and the options it excludes."""
    if not isinstance(attention, nn.Module) or not callable(getattr(attention, "prepare", None)):
        msg = (
            "attention must be an nn.Module with prepare(keys) and forward(query, keys, "
            f"values, mask); got {type(attention).__name__}"
        )
        raise TypeError(msg)
    if query != "current":
        msg = f"query must be 'current' when attention is given; got {query!r}"
        raise ValueError(msg)
    if score != "additive":
        msg = (
            "score must be left at its default when attention is given (the module computes "
            f"its own scores); got {score!r}"
        )
        raise ValueError(msg)


class AttentionDecoder(nn.Module):
    r"""A GRU decoder that attends to the encoder's states: Bahdanau's or Luong's rule.

    With ``query="previous"`` (Bahdanau et al., 2014) the decoder's state **before** the
    step, :math:`\mathbf s_{t-1}`, is the query; the context then enters the GRU step with
    the previous token's embedding, and the output layer reads the new state and the
    context:

    .. math::

        \mathbf c_t = \sum_j \alpha(\mathbf s_{t-1}, \mathbf h_j)\, \mathbf h_j, \qquad
        \mathbf s_t = \operatorname{GRU}([\mathbf e(y_{t-1}); \mathbf c_t], \mathbf s_{t-1}),
        \qquad \text{logits}_t = W_o [\mathbf s_t; \mathbf c_t] + \mathbf b_o

    With ``query="current"`` (Luong et al., 2015, global attention without input feeding)
    the GRU steps first and its state **after** the step, :math:`\mathbf h_t`, is the
    query; the attentional state feeds the output layer:

    .. math::

        \mathbf h_t = \operatorname{GRU}(\mathbf e(y_{t-1}), \mathbf h_{t-1}), \qquad
        \mathbf c_t = \sum_j \alpha(\mathbf h_t, \bar{\mathbf h}_j)\, \bar{\mathbf h}_j,
        \qquad \text{logits}_t = W_s \tanh(W_c [\mathbf c_t; \mathbf h_t]) + \mathbf b_s

    The weights :math:`\alpha` are a masked softmax over the valid source positions of a
    score of the query :math:`\mathbf q` and each encoder state :math:`\mathbf h`:
    ``"additive"`` :math:`\mathbf w_v^\top \tanh(W_q \mathbf q + W_k \mathbf h)` (the
    package's :class:`~attention_book.AdditiveAttention`), ``"dot"``
    :math:`\mathbf q^\top \mathbf h` (needs ``encoder_size == hidden_size``), ``"general"``
    :math:`\mathbf q^\top W_a \mathbf h`, ``"concat"``
    :math:`\mathbf v_a^\top \tanh(W_a [\mathbf q; \mathbf h])` (the additive score written
    with one matrix). With ``score=None`` there is no attention: the context of every step
    is the encoder's final state (top layer), and the decoder is the "previous" layout with
    that fixed context. The first state is
    :math:`\mathbf s_0 = \tanh(W_{\text{init}} \mathbf h_{\text{final}})` for every layer;
    with several layers the top layer's state is the query.

    ``attention=`` replaces the built-in scorer by a module of one's own, such as Part III's
    :class:`~attention_book.variants.LocalAttention`. It must provide
    ``prepare(keys (N, S, D)) -> keys`` (run once per sentence) and
    ``forward(query (N, T, H), keys, values (N, S, D), mask (N, 1, S)) -> (context (N, T, D),
    weights (N, T, S))``, with the mask True = may attend. It works with ``query="current"``
    only (all steps query at once, so the module sees every step's index), and ``score``
    is then unused and must be left at its default; the decoder's ``score`` attribute is
    ``None``.

    Args:
        vocab_size: ``V``, size of the target vocabulary.
        embed_dim: ``E``, features of a token embedding.
        hidden_size: ``H``, features of the GRU's state.
        encoder_size: ``D``, features of the encoder's outputs (``2 * hidden_size`` of a
            bidirectional :class:`Seq2SeqEncoder`).
        score: ``"additive"``, ``"dot"``, ``"general"``, ``"concat"`` or ``None``.
        query: ``"previous"`` (Bahdanau: :math:`\mathbf s_{t-1}` queries) or ``"current"``
            (Luong: :math:`\mathbf h_t` queries).
        num_layers: Stacked GRU layers.
        dropout: Probability of dropping embedding features and the output layer's input
            (and features between GRU layers) in training.
        attention: A module that replaces the built-in scorer (see above); ``None``: the
            scorer named by ``score``.

    Raises:
        TypeError: If ``attention`` is not a module with a ``prepare`` method.
        ValueError: If a size is smaller than 1, ``score`` or ``query`` is unknown,
            ``score="dot"`` with ``encoder_size != hidden_size``, ``dropout`` is outside
            ``[0, 1)``, or ``attention`` is given with ``query="previous"`` or a ``score``
            other than the default.

    Example:
        >>> decoder = AttentionDecoder(12, 8, 16, encoder_size=32, score="general", query="current")
        >>> outputs, state = torch.randn(2, 5, 32), torch.randn(1, 2, 32)  # from an encoder
        >>> logits, weights = decoder(torch.tensor([[1, 4], [1, 7]]), outputs, state, torch.tensor([5, 3]))
        >>> logits.shape, weights.shape  # (N, T, V), (N, T, S)
        (torch.Size([2, 2, 12]), torch.Size([2, 2, 5]))
        >>> weights[1, :, 3:].abs().sum().item()  # beyond the source's length
        0.0
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int,
        hidden_size: int,
        *,
        encoder_size: int,
        score: ScoreName | None = "additive",
        query: QueryName = "previous",
        num_layers: int = 1,
        dropout: float = 0.0,
        attention: nn.Module | None = None,
    ) -> None:
        super().__init__()
        for name, size in (
            ("vocab_size", vocab_size),
            ("embed_dim", embed_dim),
            ("hidden_size", hidden_size),
            ("encoder_size", encoder_size),
            ("num_layers", num_layers),
        ):
            check_int(name, size, minimum=1)
        check_choice("score", score, (*get_args(ScoreName), None))
        check_choice("query", query, get_args(QueryName))
        check_probability("dropout", dropout)
        if score == "dot" and encoder_size != hidden_size:
            msg = (
                f"encoder_size must equal hidden_size = {hidden_size} for score='dot' "
                f"(a dot product needs equal sizes); got encoder_size = {encoder_size}"
            )
            raise ValueError(msg)
        if attention is not None:
            _check_custom_attention(attention, score, query)
        self.vocab_size, self.hidden_size, self.encoder_size = vocab_size, hidden_size, encoder_size
        self.num_layers, self.query = num_layers, query
        self.score: ScoreName | None = None if attention is not None else score
        self.luong = (score is not None or attention is not None) and query == "current"
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.init_state = nn.Linear(encoder_size, num_layers * hidden_size)
        self.rnn = nn.GRU(
            embed_dim if self.luong else embed_dim + encoder_size,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        if attention is None and score is not None:
            attention = _Attention(score, hidden_size, encoder_size)
        self.attention = attention
        self.W_c = (
            nn.Linear(encoder_size + hidden_size, hidden_size, bias=False) if self.luong else None
        )
        self.output = nn.Linear(
            hidden_size if self.luong else hidden_size + encoder_size, vocab_size
        )

    def forward(
        self, tgt_in: Tensor, enc_outputs: Tensor, enc_state: Tensor, src_lens: Tensor
    ) -> Seq2SeqOutput:
        """Decode ``tgt_in (N, T)`` with teacher forcing: step ``t`` reads token ``t``.

        Args:
            tgt_in: ``(N, T)`` target ids fed to the decoder (``bos`` then the reference).
            enc_outputs: ``(N, S, D)``, the encoder's states (keys and values).
            enc_state: ``(layers, N, D)``, the encoder's final states; the top layer
                initialises the decoder.
            src_lens: ``(N,)``, the number of valid source positions, in ``[1, S]``.

        Returns:
            :class:`Seq2SeqOutput` with ``logits (N, T, V)`` and ``weights (N, T, S)``
            (``None`` when ``score=None``).

        Raises:
            TypeError: If an input has the wrong dtype.
            ValueError: If a shape does not fit or an id or a length is out of range.
        """
        enc_outputs = check_float("enc_outputs", enc_outputs)
        if enc_outputs.ndim != 3 or enc_outputs.shape[-1] != self.encoder_size:
            msg = (
                f"enc_outputs must have shape (N, S, D) with D = encoder_size = "
                f"{self.encoder_size}; got {fmt_shape(enc_outputs.shape)}"
            )
            raise ValueError(msg)
        batch, num_src, _ = enc_outputs.shape
        tgt_in = check_token_ids("tgt_in", tgt_in, self.vocab_size, f"(N, T) = ({batch}, T)")
        if tgt_in.shape[0] != batch:
            msg = (
                f"tgt_in must have N = {batch} rows like enc_outputs (N, S, D) = "
                f"{fmt_shape(enc_outputs.shape)}; got shape {fmt_shape(tgt_in.shape)}"
            )
            raise ValueError(msg)
        enc_state = check_float("enc_state", enc_state)
        if enc_state.ndim != 3 or enc_state.shape[1:] != (batch, self.encoder_size):
            msg = (
                f"enc_state must have shape (layers, N, D) = (layers, {batch}, "
                f"{self.encoder_size}); got {fmt_shape(enc_state.shape)}"
            )
            raise ValueError(msg)
        src_lens = check_lengths("src_lens", src_lens, batch, num_src)

        x = self.dropout(self.embedding(tgt_in))  # (N, T) -> (N, T, E)
        # s_0 = tanh(W_init h_final): (N, D) -> (N, layers * H) -> (layers, N, H)
        state = torch.tanh(self.init_state(enc_state[-1]))
        state = state.reshape(batch, self.num_layers, self.hidden_size).transpose(0, 1)
        state = state.contiguous()
        if self.attention is None:
            return self._forward_without_attention(x, enc_state[-1], state)
        mask = valid_lens_to_mask(src_lens, num_src)  # (N, 1, S), True = may attend
        prepare = cast("Callable[[Tensor], Tensor]", self.attention.prepare)
        keys = prepare(enc_outputs)  # once per sentence
        if self.luong:
            return self._forward_current(x, keys, enc_outputs, mask, state)
        return self._forward_previous(x, keys, enc_outputs, mask, state)

    def _forward_without_attention(
        self, x: Tensor, context: Tensor, state: Tensor
    ) -> Seq2SeqOutput:
        """The baseline: every step sees the same context, the encoder's final state."""
        context = context[:, None].expand(-1, x.shape[1], -1)  # (N, D) -> (N, T, D)
        outputs, _ = self.rnn(torch.cat([x, context], dim=-1), state)  # (N, T, E + D) -> (N, T, H)
        features = self.dropout(torch.cat([outputs, context], dim=-1))  # (N, T, H + D)
        return Seq2SeqOutput(self.output(features), None)

    def _forward_previous(
        self, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor, state: Tensor
    ) -> Seq2SeqOutput:
        """Bahdanau: the state before the step, s_{t-1}, queries; one step at a time."""
        assert self.attention is not None
        logits, weights = [], []
        for t in range(x.shape[1]):
            query = state[-1][:, None]  # s_{t-1}, top layer: (N, H) -> (N, 1, H)
            context, alpha = self.attention(query, keys, values, mask)  # (N, 1, D), (N, 1, S)
            step_input = torch.cat([x[:, t : t + 1], context], dim=-1)  # (N, 1, E + D)
            output, state = self.rnn(step_input, state)  # s_t: (N, 1, H)
            features = self.dropout(torch.cat([output, context], dim=-1))  # (N, 1, H + D)
            logits.append(self.output(features))  # (N, 1, V)
            weights.append(alpha)
        return Seq2SeqOutput(torch.cat(logits, dim=1), torch.cat(weights, dim=1))

    def _forward_current(
        self, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor, state: Tensor
    ) -> Seq2SeqOutput:
        """Luong: the state after the step, h_t, queries; all steps at once."""
        assert self.attention is not None
        assert self.W_c is not None
        outputs, _ = self.rnn(x, state)  # h_1 .. h_T: (N, T, E) -> (N, T, H)
        context, weights = self.attention(outputs, keys, values, mask)  # (N, T, D), (N, T, S)
        attentional = torch.tanh(self.W_c(torch.cat([context, outputs], dim=-1)))  # (N, T, H)
        return Seq2SeqOutput(self.output(self.dropout(attentional)), weights)

    def extra_repr(self) -> str:
        """Show the options in ``print(module)``."""
        if self.attention is not None and not isinstance(self.attention, _Attention):
            return f"attention={type(self.attention).__name__}, query={self.query!r}"
        return f"score={self.score!r}, query={self.query!r}"


class Seq2Seq(nn.Module):
    r"""An encoder-decoder trained with teacher forcing: the decoder reads the reference.

    .. math::

        p(y_t \mid y_{<t}, \mathbf x) = \operatorname{softmax}(\text{logits}_t),
        \qquad \text{logits}_{1..T} = \operatorname{decoder}(y_{0..T-1},
        \operatorname{encoder}(\mathbf x))

    Args:
        encoder: A :class:`Seq2SeqEncoder`.
        decoder: An :class:`AttentionDecoder` whose ``encoder_size`` is the encoder's
            ``output_size``.

    Raises:
        ValueError: If the decoder's ``encoder_size`` differs from the encoder's
            ``output_size``.

    Example:
        >>> model = Seq2Seq(Seq2SeqEncoder(10, 8, 16), AttentionDecoder(12, 8, 16, encoder_size=32))
        >>> src, src_lens = torch.tensor([[4, 5, 2], [6, 2, 0]]), torch.tensor([3, 2])
        >>> logits, weights = model(src, src_lens, tgt_in=torch.tensor([[1, 3, 4, 5], [1, 6, 0, 0]]))
        >>> logits.shape, weights.shape
        (torch.Size([2, 4, 12]), torch.Size([2, 4, 3]))
        >>> torch.allclose(weights.sum(-1), torch.ones(2, 4)), weights[1, :, 2].max().item()
        (True, 0.0)
    """

    def __init__(self, encoder: Seq2SeqEncoder, decoder: AttentionDecoder) -> None:
        super().__init__()
        if decoder.encoder_size != encoder.output_size:
            msg = (
                f"decoder must have encoder_size = encoder.output_size = {encoder.output_size}; "
                f"got encoder_size = {decoder.encoder_size}"
            )
            raise ValueError(msg)
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Seq2SeqOutput:
        """Encode ``src (N, S)`` and decode ``tgt_in (N, T)`` with teacher forcing.

        Args:
            src: ``(N, S)`` source ids, padded beyond ``src_lens``.
            src_lens: ``(N,)`` source lengths in ``[1, S]``.
            tgt_in: ``(N, T)`` decoder inputs: ``bos`` and the reference without its last
                token (``tgt[:, :-1]``); step ``t`` predicts ``tgt[:, t + 1]``.

        Returns:
            :class:`Seq2SeqOutput` with ``logits (N, T, V)`` and ``weights (N, T, S)``.

        Raises:
            TypeError: If an input is not an integer tensor.
            ValueError: If an id or a length is out of range or the batch sizes differ.
        """
        src = check_token_ids("src", src, self.encoder.vocab_size, "(N, S)")
        tgt_in = check_token_ids("tgt_in", tgt_in, self.decoder.vocab_size, "(N, T)")
        if tgt_in.shape[0] != src.shape[0]:
            msg = (
                f"tgt_in must have N = {src.shape[0]} rows like src (N, S) = "
                f"{fmt_shape(src.shape)}; got shape {fmt_shape(tgt_in.shape)}"
            )
            raise ValueError(msg)
        enc_outputs, enc_state = self.encoder(src, src_lens)
        result: Seq2SeqOutput = self.decoder(tgt_in, enc_outputs, enc_state, src_lens)
        return result
