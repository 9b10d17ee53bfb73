"""The toy translation task, its vocabularies and BLEU, against the rules they promise."""

from __future__ import annotations

import math
from collections import Counter
from fractions import Fraction

import pytest
import torch

from attention_book.models import TranslationData, Vocab, bleu, held_out, translation_data
from attention_book.models.translation import _ADJECTIVES, _LEXICON

ADJECTIVES_EN = {english for english, _ in _ADJECTIVES}
FRENCH_OF = dict(_LEXICON)


@pytest.fixture(scope="module")
def data() -> TranslationData:
    return translation_data()


def words(vocab: Vocab, row: torch.Tensor, length: int) -> list[str]:
    return [vocab.tokens[i] for i in row[:length].tolist()]


def test_shapes_dtypes_and_special_tokens(data: TranslationData) -> None:
    n = 2000
    assert data.src.shape[0] == data.tgt.shape[0] == n
    assert data.src_lens.shape == data.tgt_lens.shape == (n,)
    assert data.alignment.shape == data.tgt.shape
    for tensor in (data.src, data.src_lens, data.tgt, data.tgt_lens, data.alignment):
        assert tensor.dtype == torch.int64
    for vocab in (data.src_vocab, data.tgt_vocab):
        assert (vocab.pad, vocab.bos, vocab.eos) == (0, 1, 2)
        assert vocab.tokens[:3] == ["<pad>", "<bos>", "<eos>"]
        assert len(vocab) - 3 <= 64
    assert data.src.shape[1] == int(data.src_lens.max())
    assert data.tgt.shape[1] == int(data.tgt_lens.max())
    rows = torch.arange(n)
    assert torch.equal(data.src[rows, data.src_lens - 1], torch.full((n,), 2))  # ends with eos
    assert torch.equal(data.tgt[:, 0], torch.full((n,), 1))  # starts with bos
    assert torch.equal(data.tgt[rows, data.tgt_lens - 1], torch.full((n,), 2))  # ends with eos
    src_pos, tgt_pos = torch.arange(data.src.shape[1]), torch.arange(data.tgt.shape[1])
    src_pad = src_pos >= data.src_lens[:, None]
    tgt_pad = tgt_pos >= data.tgt_lens[:, None]
    assert bool((data.src[src_pad] == 0).all())
    assert bool((data.tgt[tgt_pad] == 0).all())
    # no special token inside a sentence
    assert bool((data.src[~src_pad & (src_pos < data.src_lens[:, None] - 1)] > 2).all())
    inner = ~tgt_pad & (tgt_pos > 0) & (tgt_pos < data.tgt_lens[:, None] - 1)
    assert bool((data.tgt[inner] > 2).all())


def test_at_most_12_words_and_the_same_number_of_words_on_each_side(
    data: TranslationData,
) -> None:
    src_words, tgt_words = data.src_lens - 1, data.tgt_lens - 2
    assert int(src_words.max()) <= 12
    assert int(tgt_words.max()) <= 12
    assert torch.equal(src_words, tgt_words)
    assert set(src_words.tolist()) == set(range(5, 12))  # every length of the grammar occurs


def test_alignment_points_at_the_source_word_each_target_word_translates(
    data: TranslationData,
) -> None:
    crossings = 0
    for n in range(200):
        s_len, t_len = int(data.src_lens[n]), int(data.tgt_lens[n])
        source = words(data.src_vocab, data.src[n], s_len)
        target = words(data.tgt_vocab, data.tgt[n], t_len)
        align = data.alignment[n].tolist()
        assert align[0] == -1  # bos
        assert align[t_len - 1] == -1  # eos
        assert all(a == -1 for a in align[t_len:])  # padding
        inner = align[1 : t_len - 1]
        assert sorted(inner) == list(range(s_len - 1))  # one-to-one: every word once
        for t, j in enumerate(inner, start=1):
            assert FRENCH_OF[source[j]] == target[t]
        # the adjective follows its noun: a swap of two neighbours, nothing else moves
        for t in range(1, len(inner)):
            if inner[t] < inner[t - 1]:
                crossings += 1
                assert inner[t - 1] == inner[t] + 1
                assert source[inner[t]] in ADJECTIVES_EN
    assert crossings > 100  # alignments do cross, often


def test_vocabularies_are_the_same_for_every_seed_and_size() -> None:
    a, b = translation_data(5, seed=0), translation_data(300, seed=1)
    assert a.src_vocab == b.src_vocab
    assert a.tgt_vocab == b.tgt_vocab
    assert a.src_vocab.tokens == b.src_vocab.tokens
    assert a.src_vocab != a.tgt_vocab
    assert a.src_vocab != "not a vocab"
    assert hash(a.src_vocab) == hash(b.src_vocab)
    assert "56 tokens" in repr(a.src_vocab)


def test_the_seed_picks_the_sentences_reproducibly_without_the_global_rng() -> None:
    state = torch.get_rng_state()
    first, again = translation_data(50, seed=7), translation_data(50, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    for x, y in zip(first[:5], again[:5], strict=True):
        assert torch.equal(x, y)
    other = translation_data(50, seed=8)
    assert not torch.equal(first.src[:, :5], other.src[:, :5])


def concat(a: TranslationData, b: TranslationData) -> TranslationData:
    """Stack two data sets, padding to the wider of each."""

    def cat(x: torch.Tensor, y: torch.Tensor, fill: int) -> torch.Tensor:
        width = max(x.shape[1], y.shape[1])
        pad = torch.nn.functional.pad
        return torch.cat(
            [
                pad(x, (0, width - x.shape[1]), value=fill),
                pad(y, (0, width - y.shape[1]), value=fill),
            ]
        )

    return TranslationData(
        cat(a.src, b.src, 0),
        torch.cat([a.src_lens, b.src_lens]),
        cat(a.tgt, b.tgt, 0),
        torch.cat([a.tgt_lens, b.tgt_lens]),
        cat(a.alignment, b.alignment, -1),
        a.src_vocab,
        a.tgt_vocab,
    )


def test_held_out_drops_exactly_the_pairs_whose_source_was_seen(data: TranslationData) -> None:
    mixed = concat(translation_data(300, seed=1), data.select(torch.arange(20)))
    seen = {tuple(r[:n].tolist()) for r, n in zip(data.src, data.src_lens, strict=True)}
    expected = [
        n for n in range(mixed.src.shape[0])
        if tuple(mixed.src[n, : mixed.src_lens[n]].tolist()) not in seen
    ]  # fmt: skip
    assert 280 <= len(expected) <= 300
    kept = held_out(mixed, data)
    assert kept.src.shape[0] == len(expected)
    assert torch.equal(kept.src_lens, mixed.src_lens[expected])
    assert torch.equal(kept.src, mixed.src[expected, : kept.src.shape[1]])
    assert held_out(data, data).src.shape[0] == 0


def test_select_trims_padding_and_keeps_everything_else(data: TranslationData) -> None:
    short = data.select(data.src_lens == 6)
    assert short.src.shape[1] == 6
    assert short.tgt.shape[1] == 7
    assert bool((short.src[:, -1] == 2).all())
    picked = data.select(torch.tensor([3, 1]))
    assert torch.equal(picked.src_lens, data.src_lens[[3, 1]])
    assert torch.equal(picked.alignment, data.alignment[[3, 1], : picked.tgt.shape[1]])
    empty = data.select(torch.zeros(2000, dtype=torch.bool))
    assert empty.src.shape == (0, 1)


def test_vocab_encode_decode() -> None:
    vocab = Vocab(["le", "chat"])
    assert vocab.encode(["<bos>", "le", "chat", "<eos>"]) == [1, 3, 4, 2]
    assert vocab.decode([1, 3, 4, 2, 4]) == ["le", "chat"]
    assert vocab.decode(torch.tensor([0, 3, 0, 4])) == ["le", "chat"]
    assert vocab.decode([]) == []
    with pytest.raises(ValueError, match="got unknown token 'chien'"):
        vocab.encode(["le", "chien"])
    with pytest.raises(ValueError, match=r"ids must lie in \[0, len\(vocab\)\) = \[0, 5\); got 5"):
        vocab.decode([3, 5])
    with pytest.raises(ValueError, match=r"ids must lie in \[0, len\(vocab\)\) = \[0, 5\); got -1"):
        vocab.decode([-1])
    with pytest.raises(ValueError, match=r"ids must be a 1-D tensor \(T,\); got shape \(1, 2\)"):
        vocab.decode(torch.tensor([[3, 4]]))
    with pytest.raises(ValueError, match=r"got repeats of \['<eos>', 'le'\]"):
        Vocab(["le", "le", "<eos>"])


def test_translation_data_errors() -> None:
    with pytest.raises(ValueError, match="num_pairs must be at least 1; got 0"):
        translation_data(0)
    with pytest.raises(TypeError, match="num_pairs must be an int; got float"):
        translation_data(2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed must be an int; got str"):
        translation_data(2, seed="0")  # type: ignore[arg-type]


# BLEU, written independently: exact fractions, n-grams counted with zip, clipping by Counter &.
def reference_bleu(prediction: list[str], reference: list[str], max_n: int) -> float:
    if not prediction:
        return 0.0
    precisions = []
    for n in range(1, max_n + 1):
        pred = Counter(zip(*(prediction[i:] for i in range(n)), strict=False))
        ref = Counter(zip(*(reference[i:] for i in range(n)), strict=False))
        total = sum(pred.values())
        clipped = sum((pred & ref).values())
        if total == 0 or clipped == 0:
            return 0.0
        precisions.append(Fraction(clipped, total))
    c, r = len(prediction), len(reference)
    penalty = 1.0 if c > r else math.exp(1 - r / c)
    return penalty * math.prod(float(p) for p in precisions) ** (1 / max_n)


def test_bleu_by_hand() -> None:
    # "le le le chat" against "le chat noir": p1 = 2/4 (le clipped to 1), p2 = 1/3 (le chat);
    # c = 4 > r = 3, no penalty: sqrt(1/2 * 1/3)
    assert bleu(["le", "le", "le", "chat"], ["le", "chat", "noir"], max_n=2) == pytest.approx(
        math.sqrt(1 / 6)
    )
    # shorter prediction: p1 = 1, p2 = 1, brevity exp(1 - 4/2)
    assert bleu(["le", "chat"], ["le", "chat", "noir", "voit"], max_n=2) == pytest.approx(
        math.exp(-1)
    )


def test_bleu_properties() -> None:
    sentence = ["le", "chat", "noir", "voit", "un", "chien"]
    assert bleu(sentence, sentence) == 1.0
    assert bleu(sentence[:4], sentence[:4]) == 1.0
    assert bleu(sentence[:3], sentence[:3]) == 0.0  # no 4-gram: shorter than max_n
    assert bleu(sentence[:3], sentence[:3], max_n=3) == pytest.approx(1.0)
    assert bleu([], sentence) == 0.0
    assert bleu(["a", "b", "c", "d"], sentence) == 0.0
    assert bleu(sentence, sentence[:5]) < 1.0  # longer than the reference: precision drops
    assert bleu(sentence[:5], sentence) < bleu(sentence, sentence)  # brevity penalty


@pytest.mark.parametrize("max_n", [1, 2, 3, 4])
def test_bleu_matches_an_independent_implementation(max_n: int) -> None:
    generator = torch.Generator().manual_seed(max_n)
    alphabet = list("abcde")
    for _ in range(200):
        lengths = torch.randint(0, 9, (2,), generator=generator).tolist()
        pred, ref = (
            [alphabet[i] for i in torch.randint(5, (length,), generator=generator).tolist()]
            for length in lengths
        )
        assert bleu(pred, ref, max_n=max_n) == pytest.approx(reference_bleu(pred, ref, max_n))


def test_bleu_errors() -> None:
    with pytest.raises(ValueError, match="max_n must be at least 1; got 0"):
        bleu(["a"], ["a"], max_n=0)
