"""Luong's local attention against float64 formulas written out one query at a time."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from attention_book.models import (
    AttentionDecoder,
    Seq2Seq,
    Seq2SeqEncoder,
    greedy_translate,
    train_seq2seq,
    translation_data,
)
from attention_book.variants import LocalAttention, LocalPositions, local_positions

N, T, S, H, DK = 3, 5, 7, 5, 13
LENS = torch.tensor([7, 1, 4])


def prefix_mask(lens: Tensor, num_keys: int = S) -> Tensor:
    """(N, 1, S), True = the first lens[n] positions."""
    return (torch.arange(num_keys) < lens[:, None])[:, None]


def inputs(num_queries: int = T) -> tuple[Tensor, Tensor, Tensor]:
    query = torch.randn(N, num_queries, H, dtype=torch.float64)
    keys = torch.randn(N, S, DK, dtype=torch.float64)
    return query, keys, keys.clone()


def make(half_window: int = 2, **options: str) -> LocalAttention:
    return LocalAttention(H, DK, half_window, **options).double()  # type: ignore[arg-type]


@torch.no_grad()
def reference(
    attention: LocalAttention, query: Tensor, keys: Tensor, lens: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """p (N, T), weights (N, T, S) and context (N, T, D_k), one query at a time."""
    half = attention.half_window
    sigma = half / 2
    p_all = torch.zeros(query.shape[:2], dtype=torch.float64)
    weights = torch.zeros(query.shape[0], query.shape[1], keys.shape[1], dtype=torch.float64)
    for n in range(query.shape[0]):
        length = int(lens[n])
        for t in range(query.shape[1]):
            h = query[n, t]
            if attention.position == "monotonic":
                p = float(min(t, length))
            else:
                assert attention.W_p is not None
                assert attention.v_p is not None
                gate = attention.v_p.weight[0] @ torch.tanh(attention.W_p.weight @ h)
                p = length * float(torch.sigmoid(gate))
            p_all[n, t] = p
            inside = [s for s in range(length) if abs(s - p) <= half]
            if not inside:
                continue
            if attention.W_a is None:
                scores = torch.stack([h @ keys[n, s] for s in inside])
            else:
                scores = torch.stack([h @ (attention.W_a.weight @ keys[n, s]) for s in inside])
            align = torch.softmax(scores, dim=0)
            for a, s in zip(align, inside, strict=True):
                gaussian = (
                    1.0
                    if attention.position == "monotonic"
                    else math.exp(-((s - p) ** 2) / (2 * sigma**2))
                )  # Luong et al.: the Gaussian belongs to local-p only
                weights[n, t, s] = a * gaussian
    return p_all, weights, weights @ keys


@pytest.mark.parametrize("position", ["predictive", "monotonic"])
@pytest.mark.parametrize("half_window", [1, 2, 5])
def test_weights_and_context_match_the_formula(position: str, half_window: int) -> None:
    attention = make(half_window, position=position)
    query, keys, values = inputs(num_queries=9)  # more steps than the shortest sources
    mask = prefix_mask(LENS)
    context, weights = attention(query, attention.prepare(keys), values, mask)
    p, expected_weights, expected_context = reference(attention, query, keys, LENS)
    assert weights is not None
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(context, expected_context)
    torch.testing.assert_close(attention.positions(query, mask), p)


def test_weights_are_zero_outside_the_window_and_on_padding() -> None:
    attention = make(2)
    query, keys, values = inputs()
    mask = prefix_mask(LENS)
    _, weights = attention(query, attention.prepare(keys), values, mask)
    assert weights is not None
    p = attention.positions(query, mask)  # (N, T)
    window = (torch.arange(S) - p[..., None]).abs() <= 2  # (N, T, S)
    assert bool((weights[~(window & mask)] == 0).all())
    assert bool((weights[window & mask] > 0).all())
    assert int((weights > 0).sum(-1).max()) <= 2 * 2 + 1
    # the Gaussian is not renormalised: every row sums to at most 1, most to less
    assert bool((weights.sum(-1) <= 1 + 1e-12).all())
    assert bool((weights.sum(-1) < 1 - 1e-3).any())


def test_predicted_centre_lies_in_zero_to_source_length() -> None:
    attention = make(1)
    assert attention.v_p is not None
    with torch.no_grad():
        attention.v_p.weight.mul_(100)  # saturate the sigmoid
    query = torch.randn(N, 11, H, dtype=torch.float64)
    mask = prefix_mask(LENS)
    p = attention.positions(query, mask)
    lengths = LENS[:, None].double()
    assert bool((p >= 0).all())
    assert bool((p <= lengths).all())
    assert bool((p < 0.01).any())  # both ends are reached
    assert bool((p > lengths - 0.01).any())


def test_monotonic_centre_is_the_step_capped_at_the_source_length() -> None:
    attention = make(1, position="monotonic")
    query = torch.randn(N, 9, H, dtype=torch.float64)
    p = attention.positions(query, prefix_mask(LENS))
    expected = torch.minimum(torch.arange(9.0, dtype=torch.float64), LENS[:, None].double())
    torch.testing.assert_close(p, expected)
    assert attention.W_p is None  # local-m has no parameters of p_t
    assert attention.v_p is None


def test_a_window_wider_than_the_sentence_is_global_attention() -> None:
    attention = make(10**6)  # the window covers everything, the Gaussian is flat
    query, keys, values = inputs()
    mask = prefix_mask(LENS)
    _, weights = attention(query, attention.prepare(keys), values, mask)
    assert attention.W_a is not None
    scores = query @ (keys @ attention.W_a.weight.T).transpose(1, 2)  # (N, T, S)
    expected = torch.softmax(scores.masked_fill(~mask, -math.inf), dim=-1)
    torch.testing.assert_close(weights, expected, atol=1e-9, rtol=0)


def test_dot_score_is_general_with_the_identity() -> None:
    dot = LocalAttention(H, H, 2, score="dot").double()
    general = LocalAttention(H, H, 2).double()
    with torch.no_grad():
        general.load_state_dict(dot.state_dict(), strict=False)
        assert general.W_a is not None
        general.W_a.weight.copy_(torch.eye(H))
    query, keys = (
        torch.randn(N, T, H, dtype=torch.float64),
        torch.randn(N, S, H, dtype=torch.float64),
    )
    mask = prefix_mask(LENS)
    expected = general(query, general.prepare(keys), keys, mask)
    actual = dot(query, dot.prepare(keys), keys, mask)
    torch.testing.assert_close(actual.output, expected.output)
    assert dot.W_a is None


def test_fully_masked_rows_and_no_mask() -> None:
    attention = make(2)
    query, keys, values = inputs()
    mask = prefix_mask(torch.tensor([0, 3, 7]))
    context, weights = attention(query, attention.prepare(keys), values, mask)
    assert weights is not None
    assert bool((weights[0] == 0).all())
    assert bool((context[0] == 0).all())
    assert not bool(context.isnan().any())
    full = attention(query, attention.prepare(keys), values, prefix_mask(torch.tensor([S] * N)))
    none = attention(query, attention.prepare(keys), values)
    torch.testing.assert_close(none.output, full.output)


def test_leading_batch_dims_and_inputs_left_alone() -> None:
    attention = make(2)
    query = torch.randn(2, N, T, H, dtype=torch.float64)
    keys = torch.randn(2, N, S, DK, dtype=torch.float64)
    mask = prefix_mask(LENS)  # (N, 1, S) broadcasts over the leading dim
    copies = query.clone(), keys.clone(), mask.clone()
    context, _ = attention(query, attention.prepare(keys), keys, mask)
    for i in range(2):
        expected = attention(query[i], attention.prepare(keys[i]), keys[i], mask)
        torch.testing.assert_close(context[i], expected.output)
    for original, copy in zip((query, keys, mask), copies, strict=True):
        assert torch.equal(original, copy)


def test_gradients_reach_the_position_parameters() -> None:
    attention = LocalAttention(3, 4, 1).double()
    query = torch.randn(2, 3, 3, dtype=torch.float64)
    keys = torch.randn(2, 5, 4, dtype=torch.float64)
    mask = prefix_mask(torch.tensor([5, 3]), 5)
    names = ["W_a.weight", "W_p.weight", "v_p.weight"]
    params = [attention.get_parameter(name).detach().clone().requires_grad_() for name in names]

    def run(query: Tensor, keys: Tensor, W_a: Tensor, W_p: Tensor, v_p: Tensor) -> Tensor:
        """The context as a function of the inputs and the three weight matrices."""
        state = dict(zip(names, (W_a, W_p, v_p), strict=True))
        prepared = keys @ W_a.T  # what prepare computes: (N, S, D_k) -> (N, S, H)
        out = torch.func.functional_call(attention, state, (query, prepared, keys, mask))
        return out.output  # type: ignore[no-any-return]

    args = (query.requires_grad_(), keys.requires_grad_(), *params)
    assert torch.autograd.gradcheck(run, args)
    grads = torch.autograd.grad(run(*args).sum(), params[1:])
    for grad in grads:  # W_p and v_p: only through the Gaussian
        assert bool((grad != 0).any())


def make_decoder(position: str = "predictive", half_window: int = 2) -> AttentionDecoder:
    local = LocalAttention(12, 12, half_window, position=position)  # type: ignore[arg-type]
    return AttentionDecoder(11, 4, 12, encoder_size=12, query="current", attention=local)


def test_plugs_into_the_decoder_as_luongs_layout() -> None:
    torch.manual_seed(1)
    decoder = make_decoder().double()
    outputs = torch.randn(N, S, 12, dtype=torch.float64)
    state = torch.randn(1, N, 12, dtype=torch.float64)
    tgt_in = torch.randint(3, 11, (N, T))
    logits, weights = decoder(tgt_in, outputs, state, LENS)
    # the same steps by hand: GRU over all steps, local attention, W_c, output layer
    s0 = torch.tanh(decoder.init_state(state[-1]))[None]
    h, _ = decoder.rnn(decoder.embedding(tgt_in), s0)
    local = decoder.attention
    assert isinstance(local, LocalAttention)
    assert decoder.W_c is not None
    _, expected_weights, context = reference(local, h, outputs, LENS)
    expected_logits = decoder.output(torch.tanh(decoder.W_c(torch.cat([context, h], dim=-1))))
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(logits, expected_logits)
    assert decoder.score is None
    assert "attention=LocalAttention, query='current'" in repr(decoder)
    assert "half_window=2, position='predictive', score='general'" in repr(decoder)


def test_a_wide_window_in_the_decoder_is_luongs_general_decoder() -> None:
    local = make_decoder(half_window=10**6).double()
    general = AttentionDecoder(11, 4, 12, encoder_size=12, score="general", query="current")
    general = general.double()
    general.load_state_dict(local.state_dict(), strict=False)  # W_p, v_p have no counterpart
    outputs, state = torch.randn(N, S, 12, dtype=torch.float64), torch.randn(1, N, 12).double()
    tgt_in = torch.randint(3, 11, (N, T))
    torch.testing.assert_close(
        local(tgt_in, outputs, state, LENS).logits, general(tgt_in, outputs, state, LENS).logits
    )


@pytest.mark.parametrize("position", ["predictive", "monotonic"])
def test_trains_translates_and_reports_its_centres(position: str) -> None:
    data = translation_data(32)
    source, target = len(data.src_vocab), len(data.tgt_vocab)
    local = LocalAttention(16, 16, 2, position=position)  # type: ignore[arg-type]
    decoder = AttentionDecoder(target, 8, 16, encoder_size=16, query="current", attention=local)
    model = Seq2Seq(Seq2SeqEncoder(source, 8, 8), decoder)
    losses = train_seq2seq(model, data, epochs=1, batch_size=16)
    assert len(losses) == 1
    assert math.isfinite(losses[0])
    model.train()
    src, src_lens = data.src[:4], data.src_lens[:4]
    ids, weights = greedy_translate(model, src, src_lens, max_len=6)
    assert weights is not None
    tgt_in = torch.cat([torch.ones_like(ids[:, :1]), ids[:, :-1]], dim=1)  # bos, then ids
    result = local_positions(model, src, src_lens, tgt_in)
    assert isinstance(result, LocalPositions)
    assert result.positions.shape == ids.shape
    assert bool((result.positions <= src_lens[:, None]).all())
    assert not local._forward_hooks  # no hook left behind
    assert model.training  # and the mode restored
    # the centres and weights of the very steps greedy decoding took (before each eos)
    live = torch.cat([torch.ones_like(ids[:, :1]), ids[:, :-1] != 2], dim=1).cumprod(1).bool()
    torch.testing.assert_close(result.weights[live], weights[live])
    if position == "monotonic":
        steps = torch.arange(ids.shape[1]).expand_as(ids)
        torch.testing.assert_close(
            result.positions, torch.minimum(steps, src_lens[:, None]).float()
        )


ATT = make(2)
Q, K, _ = inputs()
MODEL = Seq2Seq(Seq2SeqEncoder(11, 4, 6), AttentionDecoder(11, 4, 12, encoder_size=12))
TWO = Seq2Seq(Seq2SeqEncoder(11, 4, 6), make_decoder())
TWO.extra = LocalAttention(4, 4, 1)  # a second local attention


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: LocalAttention(5, 6, 0), ValueError, "half_window must be at least 1; got 0"),
        (lambda: LocalAttention(5, 6, 1.5), TypeError,  # type: ignore[arg-type]
         "half_window must be an int; got float"),
        (lambda: LocalAttention(0, 6, 1), ValueError, "hidden_size must be at least 1; got 0"),
        (lambda: LocalAttention(5, 6, 1, position="fixed"), ValueError,  # type: ignore[arg-type]
         "position must be one of 'predictive', 'monotonic'; got 'fixed'"),
        (lambda: LocalAttention(5, 6, 1, score="additive"), ValueError,  # type: ignore[arg-type]
         "score must be one of 'dot', 'general'; got 'additive'"),
        (lambda: LocalAttention(5, 6, 1, score="dot"), ValueError,
         "encoder_size must equal hidden_size = 5 for score='dot' .*; got encoder_size = 6"),
        (lambda: ATT.prepare(K[..., :4]), ValueError,
         r"keys must have shape \(..., S, D_k\) with D_k = encoder_size = 13; got \(3, 7, 4\)"),
        (lambda: ATT.prepare(K.long()), TypeError,
         "keys must be a floating-point tensor; got dtype torch.int64"),
        (lambda: ATT(Q[..., :4], K[..., :4], K), ValueError,
         r"query must have shape \(..., T, H\) with H = hidden_size = 5; got \(3, 5, 4\)"),
        (lambda: ATT(Q, ATT.prepare(K).float(), K), TypeError,
         "key must have the dtype of query"),
        (lambda: ATT(Q, ATT.prepare(K), K[:, :4]), ValueError, "value must have S = 7 rows"),
        (lambda: ATT(Q, ATT.prepare(K), K, prefix_mask(LENS).int()), TypeError,
         "attn_mask must be a boolean tensor"),
        (lambda: ATT(Q, ATT.prepare(K), K, prefix_mask(LENS, 6)), ValueError,
         r"attn_mask must broadcast to \(N, L, S\) = \(3, 5, 7\); got \(3, 1, 6\)"),
        (lambda: ATT.positions(Q, torch.tensor(True)), ValueError,
         r"attn_mask must have at least 1 dims \(..., T, S\); got shape \(\)"),
        (lambda: ATT.positions(Q, "mask"), TypeError,  # type: ignore[arg-type]
         "attn_mask must be a torch.Tensor; got str"),
        (lambda: AttentionDecoder(5, 4, 6, encoder_size=6, attention=LocalAttention(6, 6, 1)),
         ValueError, "query must be 'current' when attention is given; got 'previous'"),
        (lambda: AttentionDecoder(5, 4, 6, encoder_size=6, score="general", query="current",
                                  attention=LocalAttention(6, 6, 1)), ValueError,
         "score must be left at its default when attention is given .*; got 'general'"),
        (lambda: AttentionDecoder(5, 4, 6, encoder_size=6, score=None, query="current",
                                  attention=LocalAttention(6, 6, 1)), ValueError,
         "score must be left at its default when attention is given .*; got None"),
        (lambda: AttentionDecoder(5, 4, 6, encoder_size=6, query="current",
                                  attention=torch.nn.Linear(6, 6)), TypeError,
         r"attention must be an nn.Module with prepare\(keys\) .*; got Linear"),
        (lambda: local_positions(MODEL, Q, LENS, Q), ValueError,
         "model must contain exactly one LocalAttention; got 0"),
        (lambda: local_positions(TWO, Q, LENS, Q), ValueError,
         "model must contain exactly one LocalAttention; got 2"),
    ],
)  # fmt: skip
def test_errors(call: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()  # type: ignore[operator]
