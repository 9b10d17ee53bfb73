"""Greedy decoding: its own output fed back through forward gives the same weights."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import Tensor, nn

from attention_book import get_device
from attention_book.models import (
    AttentionDecoder,
    Seq2Seq,
    Seq2SeqEncoder,
    Translation,
    greedy_translate,
    train_seq2seq,
    translation_data,
)

V = 56  # both vocabularies of the toy task


@pytest.fixture(scope="module")
def model() -> Seq2Seq:
    """A model trained just enough to stop at different lengths."""
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqEncoder(V, 16, 16), AttentionDecoder(V, 16, 32, encoder_size=32))
    train_seq2seq(model, translation_data(400, seed=5), epochs=3, lr=0.01)
    return model


def test_feeding_the_output_back_gives_the_same_weights(model: Seq2Seq) -> None:
    data = translation_data(40, seed=9)
    ids, weights = greedy_translate(model, data.src, data.src_lens, max_len=14)
    assert ids.dtype == torch.int64
    assert weights is not None
    n, steps = ids.shape
    assert weights.shape == (n, steps, data.src.shape[1])
    is_eos = ids == 2
    has_eos = is_eos.any(dim=1)
    assert bool(has_eos.any())
    lengths = torch.where(has_eos, is_eos.int().argmax(dim=1) + 1, steps)  # tokens up to eos
    assert len(set(lengths.tolist())) > 1  # sentences end at different steps
    assert bool((ids != 1).all())  # no bos
    after_eos = torch.arange(steps) >= lengths[:, None]
    assert bool((ids[after_eos] == 0).all())  # pad after eos
    assert bool((weights[after_eos] == 0).all())
    assert bool((ids[~after_eos] != 0).all())

    tgt_in = torch.cat([torch.ones(n, 1, dtype=torch.long), ids], dim=1)  # bos + generated
    with torch.no_grad():
        logits, forced = model(data.src, data.src_lens, tgt_in)
    assert forced is not None
    keep = ~after_eos
    torch.testing.assert_close(weights[keep], forced[:, :steps][keep])
    assert torch.equal(logits[:, :steps].argmax(-1)[keep], ids[keep])  # the same choices
    torch.testing.assert_close(weights[keep].sum(-1), torch.ones(int(keep.sum())))


def test_stops_at_max_len_or_when_every_sentence_is_done(model: Seq2Seq) -> None:
    data = translation_data(8, seed=2)
    short = greedy_translate(model, data.src, data.src_lens, max_len=3)
    assert short.ids.shape == (8, 3)
    full = greedy_translate(model, data.src, data.src_lens, max_len=40)
    assert full.ids.shape[1] < 40
    assert bool((full.ids == 2).any(dim=1).all())
    assert torch.equal(full.ids[:, :3], short.ids)


def test_leaves_the_model_in_its_mode_and_uses_eval_mode(model: Seq2Seq) -> None:
    dropped = Seq2Seq(
        Seq2SeqEncoder(V, 8, 8, dropout=0.5),
        AttentionDecoder(V, 8, 8, encoder_size=16, dropout=0.5),
    ).train()
    data = translation_data(6)
    first = greedy_translate(dropped, data.src, data.src_lens)
    assert dropped.training
    assert torch.equal(greedy_translate(dropped, data.src, data.src_lens).ids, first.ids)
    model.eval()
    greedy_translate(model, data.src, data.src_lens)
    assert not model.training


def test_a_model_without_attention_has_no_weights() -> None:
    model = Seq2Seq(Seq2SeqEncoder(V, 8, 8), AttentionDecoder(V, 8, 8, encoder_size=16, score=None))
    data = translation_data(3)
    ids, weights = greedy_translate(model, data.src, data.src_lens, max_len=4)
    assert ids.shape[0] == 3
    assert weights is None


class FakeTransformerOutput(NamedTuple):
    logits: Tensor
    encoder_weights: list[Tensor]
    decoder_self_weights: list[Tensor]
    cross_weights: list[Tensor]


class FakeTransformer(nn.Module):
    """Writes 3, 4, 5, ... then eos after src_lens tokens; cross-attention from the prefix."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> FakeTransformerOutput:
        t, s = tgt_in.shape[1], src.shape[1]
        steps = torch.arange(t)
        wanted = torch.where(steps[None] < src_lens[:, None] - 1, steps[None] + 3, 2)  # (N, T)
        logits = nn.functional.one_hot(wanted, 8).float()
        heads = torch.stack(  # (N, 2, T, S): head h puts its weight on position (t + h) % len
            [
                nn.functional.one_hot((steps[None] + h) % src_lens[:, None], s).float()
                for h in range(2)
            ],
            dim=1,
        )
        scale = (tgt_in.float().sum(-1) + 1)[:, None, None, None]  # the other layer varies
        return FakeTransformerOutput(logits, [], [], [heads * 0 + 1 / s / scale, heads])


def test_works_for_a_transformer_with_the_last_layers_cross_attention_averaged() -> None:
    src = torch.tensor([[3, 4, 5, 2], [3, 2, 0, 0]])
    src_lens = torch.tensor([4, 2])
    result = greedy_translate(FakeTransformer(), src, src_lens, max_len=10)
    assert isinstance(result, Translation)
    assert result.ids.tolist() == [[3, 4, 5, 2], [3, 2, 0, 0]]
    assert result.weights is not None
    expected = torch.tensor(
        [
            [[0.5, 0.5, 0, 0], [0, 0.5, 0.5, 0], [0, 0, 0.5, 0.5], [0.5, 0, 0, 0.5]],
            [[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
        ]
    )
    torch.testing.assert_close(result.weights, expected)


def test_runs_on_the_default_device(model: Seq2Seq) -> None:
    device = get_device()
    data = translation_data(4)
    on_device = Seq2Seq(Seq2SeqEncoder(V, 8, 8), AttentionDecoder(V, 8, 8, encoder_size=16)).to(
        device
    )
    ids, weights = greedy_translate(
        on_device, data.src.to(device), data.src_lens.to(device), max_len=3
    )
    assert ids.device.type == device.type
    assert weights is not None
    assert weights.device.type == device.type


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"max_len": 0}, ValueError, "max_len must be at least 1; got 0"),
        ({"src": torch.tensor([3, 2])}, ValueError, r"src must have shape \(N, S\); got \(2,\)"),
        ({"src": [[3, 2]]}, TypeError, "src must be a torch.Tensor; got list"),
        ({"src_lens": torch.tensor([3])}, ValueError, r"src_lens must lie in \[1, 2\]; got values from 3 to 3"),
        ({"src_lens": torch.tensor([1, 1])}, ValueError, r"src_lens must have shape \(N,\) = \(1,\); got \(2,\)"),
        ({"src": torch.tensor([[3, 99]])}, ValueError, r"src must hold token ids in \[0, vocab_size\) = \[0, 56\)"),
    ],
)  # fmt: skip
def test_errors(
    model: Seq2Seq, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    arguments: dict[str, object] = {
        "src": torch.tensor([[3, 2]]),
        "src_lens": torch.tensor([2]),
        **kwargs,
    }
    with pytest.raises(error, match=message):
        greedy_translate(model, **arguments)  # type: ignore[arg-type]
