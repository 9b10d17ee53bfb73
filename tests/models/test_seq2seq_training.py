"""Training is deterministic and learns; the two measures count what the issue defines."""

from __future__ import annotations

import copy
import itertools
import time

import pytest
import torch
from torch import Tensor, nn

from attention_book import get_device
from attention_book.models import (
    AttentionDecoder,
    Seq2Seq,
    Seq2SeqEncoder,
    Seq2SeqOutput,
    TranslationData,
    attention_agreement,
    held_out,
    sequence_loss,
    token_accuracy,
    train_seq2seq,
    translation_data,
)

V = 56


def small_model(*, dropout: float = 0.0, score: str | None = "additive") -> Seq2Seq:
    return Seq2Seq(
        Seq2SeqEncoder(V, 16, 16, dropout=dropout),
        AttentionDecoder(V, 16, 32, encoder_size=32, dropout=dropout, score=score),  # type: ignore[arg-type]
    )


def test_a_small_model_learns_within_seconds() -> None:
    model = small_model()
    losses = train_seq2seq(model, translation_data(400), epochs=5, batch_size=32, lr=0.02)
    assert len(losses) == 5
    assert losses[0] > 2.5  # about log 56 = 4.0 at the start of the first epoch
    assert losses[-1] < 0.3 * losses[0]
    assert all(b < a for a, b in itertools.pairwise(losses))


def test_deterministic_for_a_seed_whatever_the_global_rng_and_leaves_it_alone() -> None:
    data = translation_data(64)
    model = small_model(dropout=0.3)
    first, second, other = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    torch.manual_seed(1)
    state = torch.get_rng_state()
    losses = train_seq2seq(first, data, epochs=2, batch_size=16, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(2)  # a different global state changes nothing
    assert train_seq2seq(second, data, epochs=2, batch_size=16, seed=3) == losses
    for p, q in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(p, q)
    assert train_seq2seq(other, data, epochs=2, batch_size=16, seed=4) != losses
    assert first.training  # the mode it came in


def test_extra_padding_changes_no_loss() -> None:
    data = translation_data(64)
    wider = data._replace(
        src=nn.functional.pad(data.src, (0, 3)),
        tgt=nn.functional.pad(data.tgt, (0, 2)),
        alignment=nn.functional.pad(data.alignment, (0, 2), value=-1),
    )
    model = small_model().eval()
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    assert train_seq2seq(a, data, epochs=2) == train_seq2seq(b, wider, epochs=2)
    assert not a.training


def test_sequence_loss_is_the_mean_cross_entropy_of_the_non_padding_tokens() -> None:
    logits = torch.randn(2, 4, 7, dtype=torch.float64)
    labels = torch.tensor([[3, 5, 2, 0], [6, 2, 0, 0]])
    loss, count = sequence_loss(logits, labels)
    assert count == 5
    expected = -sum(
        torch.log_softmax(logits[n, t], dim=0)[labels[n, t]]
        for n in range(2)
        for t in range(4)
        if labels[n, t] != 0
    )
    torch.testing.assert_close(loss, expected)


class Oracle(nn.Module):
    """Knows each source's reference; optionally gets word 2 wrong or stops after one word.

    Its weights put all mass on a chosen source position: the gold alignment of the label
    the step predicts (``shift=1``) or that of the step's input token (``shift=0``).
    """

    def __init__(
        self, data: TranslationData, *, wrong: bool = False, early: bool = False, shift: int = 1
    ) -> None:
        super().__init__()
        self.data, self.wrong, self.early, self.shift = data, wrong, early, shift
        self.unused = nn.Parameter(torch.zeros(1))

    def row(self, src: Tensor, length: Tensor) -> int:
        sentence = src[:length]
        for n in range(self.data.src.shape[0]):
            if self.data.src_lens[n] == length and torch.equal(self.data.src[n, :length], sentence):
                return n
        raise AssertionError

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Seq2SeqOutput:
        n_rows, steps = tgt_in.shape
        logits = torch.zeros(n_rows, steps, V)
        weights = torch.zeros(n_rows, steps, src.shape[1])
        for i in range(n_rows):
            n = self.row(src[i], src_lens[i])
            reference = torch.cat([self.data.tgt[n, 1:], torch.zeros(steps, dtype=torch.long)])
            gold = torch.cat([self.data.alignment[n], torch.full((steps + 1,), -1)])
            for t in range(steps):
                token = int(reference[t])
                if self.wrong and t == 2:
                    token = 3 if token != 3 else 4
                if self.early and t == 1:
                    token = 2
                logits[i, t, token] = 1.0
                position = int(gold[t + self.shift])
                weights[i, t, position if position >= 0 else int(src_lens[i]) - 1] = 1.0  # or eos
        return Seq2SeqOutput(logits, weights)


@pytest.fixture(scope="module")
def pairs() -> TranslationData:
    return translation_data(12, seed=4)


def test_token_accuracy_counts_words_and_eos_position_by_position(pairs: TranslationData) -> None:
    total = int((pairs.tgt_lens - 1).sum())  # words and eos
    assert token_accuracy(Oracle(pairs), pairs) == 1.0
    assert token_accuracy(Oracle(pairs, wrong=True), pairs) == pytest.approx((total - 12) / total)
    # stopping after one word: the first word is right, eos comes at the wrong place
    assert token_accuracy(Oracle(pairs, early=True), pairs) == pytest.approx(12 / total)
    # a translation cut short by max_len counts its missing tokens as wrong
    assert token_accuracy(Oracle(pairs), pairs, max_len=3) == pytest.approx(36 / total)


def test_attention_agreement_reads_the_row_of_the_step_that_predicts_each_word(
    pairs: TranslationData,
) -> None:
    assert attention_agreement(Oracle(pairs), pairs) == 1.0
    # the weights of the step whose *input* is the word: right only where the alignment
    # does not change from one token to the next (never, here)
    assert attention_agreement(Oracle(pairs, shift=0), pairs) == 0.0


def test_attention_agreement_needs_attention() -> None:
    data = translation_data(3)
    with pytest.raises(
        ValueError, match="model must return attention weights; got a model without"
    ):
        attention_agreement(small_model(score=None), data)


def test_any_model_with_the_forward_signature_trains() -> None:
    class Bag(nn.Module):
        """No attention at all: a bag of source words and the previous target word."""

        def __init__(self) -> None:
            super().__init__()
            self.src = nn.EmbeddingBag(V, 32, padding_idx=0)
            self.tgt = nn.Embedding(V, 32)
            self.out = nn.Linear(32, V)

        def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Seq2SeqOutput:
            context = self.src(src)[:, None]  # (N, 1, 32)
            return Seq2SeqOutput(self.out(torch.tanh(context + self.tgt(tgt_in))), None)

    losses = train_seq2seq(Bag(), translation_data(200), epochs=3, lr=0.01)
    assert losses[-1] < losses[0]


def test_trains_on_the_default_device() -> None:
    device = get_device()
    model = small_model().to(device)
    losses = train_seq2seq(model, translation_data(64), epochs=2)
    assert losses[1] < losses[0]
    assert next(model.parameters()).device.type == device.type
    assert 0.0 <= token_accuracy(model, translation_data(8, seed=1)) <= 1.0


def test_the_bahdanau_model_meets_the_bar_with_the_defaults() -> None:
    """The issue's bar: token accuracy >= 0.9 and agreement >= 0.8 on held-out pairs.

    Takes about 10 s on two free CPU cores (the issue's time limit, 30 s, is measured in
    the report, not asserted here: the test machine may be busy).
    """
    data = translation_data(seed=0)
    test = held_out(translation_data(300, seed=1), data)
    assert test.src.shape[0] >= 290
    torch.manual_seed(0)
    model = Seq2Seq(
        Seq2SeqEncoder(len(data.src_vocab), 32, 64),
        AttentionDecoder(len(data.tgt_vocab), 32, 64, encoder_size=128),
    )
    start = time.perf_counter()
    train_seq2seq(model, data)
    assert time.perf_counter() - start < 300  # a hang, not a slow machine
    assert token_accuracy(model, test) >= 0.9
    assert attention_agreement(model, test) >= 0.8


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"epochs": 0}, ValueError, "epochs must be at least 1; got 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be at least 1; got 0"),
        ({"lr": 0.0}, ValueError, "lr must be positive; got 0.0"),
        ({"max_grad_norm": -1.0}, ValueError, "max_grad_norm must be positive; got -1.0"),
        ({"seed": 1.5}, TypeError, "seed must be an int; got float"),
        ({"data": (1, 2)}, TypeError, "data must be a TranslationData; got tuple"),
    ],
)  # fmt: skip
def test_errors(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    arguments: dict[str, object] = {"data": translation_data(4), **kwargs}
    with pytest.raises(error, match=message):
        train_seq2seq(small_model(), **arguments)  # type: ignore[arg-type]


def test_measure_errors() -> None:
    for measure in (token_accuracy, attention_agreement):
        with pytest.raises(TypeError, match="data must be a TranslationData; got list"):
            measure(small_model(), [])  # type: ignore[arg-type]
