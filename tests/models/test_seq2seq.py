"""The GRU encoder-decoder against step-by-step float64 references built from its parameters."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn

from attention_book import AdditiveAttention, get_device
from attention_book.models import (
    AttentionDecoder,
    QueryName,
    ScoreName,
    Seq2Seq,
    Seq2SeqEncoder,
    Seq2SeqOutput,
)
from attention_book.models.seq2seq import _Attention

SRC_V, TGT_V = 11, 13
SCORES: list[ScoreName | None] = ["additive", "dot", "general", "concat", None]
QUERIES: list[QueryName] = ["previous", "current"]


def make_model(
    score: ScoreName | None = "additive",
    query: QueryName = "previous",
    *,
    num_layers: int = 1,
    bidirectional: bool = True,
    dropout: float = 0.0,
) -> Seq2Seq:
    hidden = 6  # encoder states: 12 features bidirectional, 6 unidirectional
    decoder_hidden = 12 if bidirectional else 6  # equal sizes, so "dot" works too
    encoder = Seq2SeqEncoder(
        SRC_V, 5, hidden, num_layers=num_layers, bidirectional=bidirectional, dropout=dropout
    )
    decoder = AttentionDecoder(
        TGT_V,
        4,
        decoder_hidden,
        encoder_size=encoder.output_size,
        score=score,
        query=query,
        num_layers=num_layers,
        dropout=dropout,
    )
    return Seq2Seq(encoder, decoder).double()


def batch() -> tuple[Tensor, Tensor, Tensor]:
    src_lens = torch.tensor([7, 1, 4])
    src = torch.randint(3, SRC_V, (3, 7))
    src[torch.arange(7) >= src_lens[:, None]] = 0
    tgt_in = torch.randint(3, TGT_V, (3, 5))
    tgt_in[:, 0] = 1
    return src, src_lens, tgt_in


def gru_cells(rnn: nn.GRU) -> list[nn.GRUCell]:
    """One GRUCell per layer with the weights of a unidirectional nn.GRU."""
    cells = []
    for layer in range(rnn.num_layers):
        cell = nn.GRUCell(rnn.input_size if layer == 0 else rnn.hidden_size, rnn.hidden_size)
        cell = cell.to(torch.float64)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(rnn, f"{name}_l{layer}"))
        cells.append(cell)
    return cells


def builtin_scorer(decoder: AttentionDecoder) -> _Attention:
    """The decoder's built-in scorer (``decoder.attention`` may hold any module)."""
    assert isinstance(decoder.attention, _Attention)
    return decoder.attention


def reference_score(decoder: AttentionDecoder, q: Tensor, h: Tensor) -> Tensor:
    """The score of one query (H,) and one encoder state (D,), straight from the formulas."""
    attention = builtin_scorer(decoder)
    if decoder.score == "additive":
        add = attention.additive
        return add.w_v.weight[0] @ torch.tanh(add.W_q.weight @ q + add.W_k.weight @ h)
    if decoder.score == "dot":
        return q @ h
    if decoder.score == "general":
        return q @ (attention.W_a.weight @ h)
    return attention.v_a.weight[0] @ torch.tanh(attention.W_a.weight @ torch.cat([q, h]))


def reference_decoder(
    decoder: AttentionDecoder, tgt_in: Tensor, outputs: Tensor, state: Tensor, src_lens: Tensor
) -> tuple[Tensor, Tensor | None]:
    """Decode one sentence and one step at a time, every formula written out."""
    cells = gru_cells(decoder.rnn)
    logits_all, weights_all = [], []
    for n in range(tgt_in.shape[0]):
        keys = outputs[n, : src_lens[n]]  # (S_n, D)
        init = torch.tanh(decoder.init_state(state[-1, n]))  # (layers * H,)
        s = list(init.reshape(decoder.num_layers, decoder.hidden_size))  # s_0 of each layer
        logits_n, weights_n = [], []

        def attend(q: Tensor, keys: Tensor = keys) -> tuple[Tensor, Tensor]:
            scores = torch.stack([reference_score(decoder, q, h) for h in keys])
            alpha = torch.softmax(scores, dim=0)  # over the valid positions only
            return alpha @ keys, alpha

        def step(x: Tensor, s: list[Tensor]) -> list[Tensor]:
            new = []
            for cell, s_layer in zip(cells, s, strict=True):
                x = cell(x[None], s_layer[None])[0]
                new.append(x)
            return new

        for t in range(tgt_in.shape[1]):
            e = decoder.embedding.weight[tgt_in[n, t]]
            if decoder.score is None:
                c = state[-1, n]  # the encoder's final state, every step
                s = step(torch.cat([e, c]), s)
                logits_n.append(decoder.output(torch.cat([s[-1], c])))
            elif decoder.query == "previous":
                c, alpha = attend(s[-1])  # s_{t-1} is the query
                s = step(torch.cat([e, c]), s)  # s_t
                logits_n.append(decoder.output(torch.cat([s[-1], c])))
                weights_n.append(alpha)
            else:
                s = step(e, s)  # h_t
                c, alpha = attend(s[-1])  # h_t is the query
                assert decoder.W_c is not None
                attentional = torch.tanh(decoder.W_c(torch.cat([c, s[-1]])))
                logits_n.append(decoder.output(attentional))
                weights_n.append(alpha)
        logits_all.append(torch.stack(logits_n))
        if weights_n:
            padded = torch.zeros(tgt_in.shape[1], outputs.shape[1], dtype=torch.float64)
            padded[:, : src_lens[n]] = torch.stack(weights_n)
            weights_all.append(padded)
    return torch.stack(logits_all), (torch.stack(weights_all) if weights_all else None)


@pytest.mark.parametrize(
    ("score", "query", "num_layers"),
    [(s, q, 1) for s, q in itertools.product(SCORES, QUERIES)]
    + [("additive", "previous", 2), ("general", "current", 2), (None, "previous", 2)],
)
def test_decoder_matches_the_formulas_step_by_step(
    score: ScoreName | None, query: QueryName, num_layers: int
) -> None:
    model = make_model(score, query, num_layers=num_layers)
    src, src_lens, tgt_in = batch()
    outputs, state = model.encoder(src, src_lens)
    logits, weights = model(src, src_lens, tgt_in)
    with torch.no_grad():
        expected_logits, expected_weights = reference_decoder(
            model.decoder, tgt_in, outputs, state, src_lens
        )
    torch.testing.assert_close(logits, expected_logits)
    if score is None:
        assert weights is None
    else:
        assert expected_weights is not None
        torch.testing.assert_close(weights, expected_weights)


@pytest.mark.parametrize(("bidirectional", "num_layers"), [(True, 1), (False, 1), (True, 2)])
def test_encoder_ignores_padding_like_a_gru_run_on_each_sentence_alone(
    bidirectional: bool, num_layers: int
) -> None:
    model = make_model(bidirectional=bidirectional, num_layers=num_layers)
    encoder = model.encoder
    src, src_lens, _ = batch()
    src[1, 1:] = 5  # not pad: whatever lies beyond the length must not matter
    outputs, state = encoder(src, src_lens)
    dirs = 2 if bidirectional else 1
    assert outputs.shape == (3, 7, dirs * 6)
    assert state.shape == (num_layers, 3, dirs * 6)
    for n in range(3):
        length = int(src_lens[n])
        alone, h_n = encoder.rnn(encoder.embedding(src[n : n + 1, :length]))
        torch.testing.assert_close(outputs[n, :length], alone[0])
        assert torch.equal(
            outputs[n, length:], torch.zeros(7 - length, dirs * 6, dtype=torch.float64)
        )
        # h_n (layers * dirs, 1, H): each layer's directions side by side
        torch.testing.assert_close(state[:, n], h_n[:, 0].reshape(num_layers, dirs * 6))
    if bidirectional and num_layers == 1:  # forward after the last word, backward after the first
        n, last = 0, int(src_lens[0]) - 1
        torch.testing.assert_close(
            state[0, n], torch.cat([outputs[n, last, :6], outputs[n, 0, 6:]])
        )


@pytest.mark.parametrize(("score", "query"), list(itertools.product(SCORES, QUERIES)))
def test_extra_padding_changes_no_logit_and_weights_are_a_masked_distribution(
    score: ScoreName | None, query: QueryName
) -> None:
    model = make_model(score, query).float()
    src, src_lens, tgt_in = batch()
    logits, weights = model(src, src_lens, tgt_in)
    longer = torch.cat([src, torch.zeros(3, 4, dtype=torch.long)], dim=1)
    longer[2, 8] = 7  # even a word beyond the length is ignored
    logits2, weights2 = model(longer, src_lens, tgt_in)
    torch.testing.assert_close(logits2, logits, rtol=0, atol=1e-6)
    assert logits.shape == (3, 5, TGT_V)
    if score is None:
        assert weights is None
        assert weights2 is None
        return
    assert weights is not None
    assert weights2 is not None
    assert weights.shape == (3, 5, 7)
    beyond = torch.arange(7) >= src_lens[:, None, None]  # (N, 1, S)
    assert bool((weights.masked_select(beyond) == 0).all())
    assert bool((weights2[:, :, 7:] == 0).all())
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    assert bool((weights >= 0).all())
    torch.testing.assert_close(weights2[:, :, :7], weights, rtol=0, atol=1e-6)
    assert torch.equal(weights[1, :, 0], torch.ones(5))  # a one-token source: all weight on it


@pytest.mark.parametrize("score", ["additive", "dot", "general", "concat"])
def test_which_state_is_the_query(score: ScoreName) -> None:
    """Bahdanau's query s_{t-1} has not read tgt_in[:, t]; Luong's h_t has."""
    src, src_lens, tgt_in = batch()
    changed = tgt_in.clone()
    changed[:, 2] = torch.where(tgt_in[:, 2] == 3, 4, 3)
    for query, first_changed_row in (("previous", 3), ("current", 2)):
        model = make_model(score, query)  # type: ignore[arg-type]
        weights, weights2 = (
            model(src, src_lens, tgt_in).weights,
            model(src, src_lens, changed).weights,
        )
        assert weights is not None
        assert weights2 is not None
        assert torch.equal(weights[:, :first_changed_row], weights2[:, :first_changed_row])
        assert not torch.allclose(weights[0, first_changed_row], weights2[0, first_changed_row])


def test_additive_score_is_the_packages_additive_attention() -> None:
    model = make_model("additive", "current")
    src, src_lens, _ = batch()
    outputs, _ = model.encoder(src, src_lens)
    attention = builtin_scorer(model.decoder)
    assert isinstance(attention.additive, AdditiveAttention)
    queries = torch.randn(3, 5, 12, dtype=torch.float64)
    mask = torch.arange(7) < src_lens[:, None, None]
    context, weights = attention(queries, attention.prepare(outputs), outputs, mask)
    expected = attention.additive(queries, outputs, outputs, valid_lens=src_lens)
    torch.testing.assert_close(weights, expected.weights)
    torch.testing.assert_close(context, expected.output)


def test_concat_is_additive_with_the_two_matrices_side_by_side() -> None:
    concat, additive = make_model("concat"), make_model("additive")
    additive.load_state_dict(
        {k: v for k, v in concat.state_dict().items() if "attention" not in k}, strict=False
    )
    a, c = builtin_scorer(additive.decoder), builtin_scorer(concat.decoder)
    with torch.no_grad():
        c.W_a.weight.copy_(torch.cat([a.additive.W_q.weight, a.additive.W_k.weight], dim=1))
        c.v_a.weight.copy_(a.additive.w_v.weight)
    src, src_lens, tgt_in = batch()
    torch.testing.assert_close(concat(src, src_lens, tgt_in), additive(src, src_lens, tgt_in))


def test_gradients_reach_every_parameter() -> None:
    for score, query in itertools.product(SCORES, QUERIES):
        model = make_model(score, query, num_layers=2)
        src, src_lens, tgt_in = batch()
        model(src, src_lens, tgt_in).logits.sum().backward()
        for name, parameter in model.named_parameters():
            assert parameter.grad is not None, (score, query, name)


def test_dropout_only_in_training_and_no_warning_with_one_layer() -> None:
    model = make_model(dropout=0.5)  # nn.GRU would warn with dropout and one layer
    src, src_lens, tgt_in = batch()
    model.eval()
    torch.testing.assert_close(model(src, src_lens, tgt_in), model(src, src_lens, tgt_in))
    model.train()
    assert not torch.allclose(
        model(src, src_lens, tgt_in).logits, model(src, src_lens, tgt_in).logits
    )


def test_runs_on_the_default_device() -> None:
    device = get_device()
    model = make_model("general", "current").float().to(device)
    src, src_lens, tgt_in = (t.to(device) for t in batch())
    output = model(src, src_lens, tgt_in)
    assert isinstance(output, Seq2SeqOutput)
    assert output.logits.device.type == device.type
    assert output.weights is not None
    torch.testing.assert_close(output.weights.sum(-1).cpu(), torch.ones(3, 5))


def test_repr_names_the_options() -> None:
    assert "score='dot', query='current'" in repr(make_model("dot", "current").decoder)


SRC, LENS, TGT = batch()
DEC = AttentionDecoder(TGT_V, 4, 12, encoder_size=12)
OUT, STATE = torch.randn(3, 7, 12), torch.randn(1, 3, 12)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: AttentionDecoder(5, 4, 6, encoder_size=6, score="cosine"), ValueError,  # type: ignore[arg-type]
         "score must be one of 'additive', 'dot', 'general', 'concat', None; got 'cosine'"),
        (lambda: AttentionDecoder(5, 4, 6, encoder_size=6, query="next"), ValueError,  # type: ignore[arg-type]
         "query must be one of 'previous', 'current'; got 'next'"),
        (lambda: AttentionDecoder(5, 4, 6, encoder_size=12, score="dot"), ValueError,
         "encoder_size must equal hidden_size = 6 for score='dot' .*; got encoder_size = 12"),
        (lambda: AttentionDecoder(5, 0, 6, encoder_size=6), ValueError,
         "embed_dim must be at least 1; got 0"),
        (lambda: AttentionDecoder(5, 4, 6, encoder_size=6, dropout=1.0), ValueError,
         r"dropout must lie in \[0, 1\); got 1.0"),
        (lambda: Seq2SeqEncoder(5, 4, 0), ValueError, "hidden_size must be at least 1; got 0"),
        (lambda: Seq2Seq(Seq2SeqEncoder(5, 4, 6), AttentionDecoder(5, 4, 6, encoder_size=6)),
         ValueError, "decoder must have encoder_size = encoder.output_size = 12; got encoder_size = 6"),
        (lambda: make_model()(SRC + 20, LENS, TGT), ValueError,
         r"src must hold token ids in \[0, vocab_size\) = \[0, 11\); got values from 20 to \d+"),
        (lambda: make_model()(SRC - 1, LENS, TGT), ValueError, "got values from -1 to"),
        (lambda: make_model()(SRC.float(), LENS, TGT), TypeError,
         "src must be an integer tensor of token ids; got dtype torch.float32"),
        (lambda: make_model()(SRC[0], LENS, TGT), ValueError,
         r"src must have shape \(N, S\) with at least one column; got \(7,\)"),
        (lambda: make_model()(SRC, LENS, TGT + 13), ValueError,
         r"tgt_in must hold token ids in \[0, vocab_size\) = \[0, 13\)"),
        (lambda: make_model()(SRC, LENS, TGT[:2]), ValueError,
         r"tgt_in must have N = 3 rows like src \(N, S\) = \(3, 7\); got shape \(2, 5\)"),
        (lambda: make_model()(SRC, torch.tensor([7, 0, 4]), TGT), ValueError,
         r"src_lens must lie in \[1, 7\]; got values from 0 to 7"),
        (lambda: make_model()(SRC, torch.tensor([8, 1, 4]), TGT), ValueError,
         r"src_lens must lie in \[1, 7\]; got values from 1 to 8"),
        (lambda: make_model()(SRC, LENS[:2], TGT), ValueError,
         r"src_lens must have shape \(N,\) = \(3,\); got \(2,\)"),
        (lambda: make_model()(SRC, LENS.float(), TGT), TypeError,
         "src_lens must be an integer tensor of lengths; got dtype torch.float32"),
        (lambda: DEC(TGT, OUT[..., :5], STATE, LENS), ValueError,
         r"enc_outputs must have shape \(N, S, D\) with D = encoder_size = 12; got \(3, 7, 5\)"),
        (lambda: DEC(TGT, OUT.long(), STATE, LENS), TypeError,
         "enc_outputs must be a floating-point tensor; got dtype torch.int64"),
        (lambda: DEC(TGT[:1], OUT, STATE, LENS), ValueError,
         r"tgt_in must have N = 3 rows like enc_outputs \(N, S, D\) = \(3, 7, 12\); got shape \(1, 5\)"),
        (lambda: DEC(TGT, OUT, STATE[0], LENS), ValueError,
         r"enc_state must have shape \(layers, N, D\) = \(layers, 3, 12\); got \(3, 12\)"),
        (lambda: DEC(TGT, OUT, STATE, torch.tensor([1, 2, 9])), ValueError,
         r"src_lens must lie in \[1, 7\]; got values from 1 to 9"),
        (lambda: DEC("tokens", OUT, STATE, LENS), TypeError,
         "tgt_in must be a torch.Tensor; got str"),
    ],
)  # fmt: skip
def test_errors(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]
