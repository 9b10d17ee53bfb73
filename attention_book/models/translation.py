"""A toy translation task the package generates: English-like to French-like, alignments cross.

The source language puts adjectives before nouns (``the black cat``), the target language
after them (``le chat noir``); everything else is translated word for word, so every
target word has exactly one source word and the gold alignment is known. A sentence is

.. code-block:: text

    S  -> NP VERB NP [PREP NP]          NP -> DET [ADJ] NOUN

with 4 determiners, 20 nouns, 12 adjectives, 12 verbs and 5 prepositions on each side
(53 word types), 5 to 11 words long.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from attention_book._checks import check_int

__all__ = ["TranslationData", "Vocab", "bleu", "held_out", "translation_data"]

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"

# (English, French) pairs by part of speech: the lexicon fixes both vocabularies.
_DETERMINERS = [("the", "le"), ("a", "un"), ("this", "ce"), ("my", "mon")]
_NOUNS = [
    ("cat", "chat"), ("dog", "chien"), ("bird", "oiseau"), ("fish", "poisson"),
    ("horse", "cheval"), ("mouse", "souris"), ("child", "enfant"), ("woman", "femme"),
    ("man", "homme"), ("teacher", "professeur"), ("farmer", "fermier"), ("king", "roi"),
    ("queen", "reine"), ("friend", "ami"), ("house", "maison"), ("garden", "jardin"),
    ("river", "riviere"), ("tree", "arbre"), ("car", "voiture"), ("book", "livre"),
]  # fmt: skip
_ADJECTIVES = [
    ("big", "grand"), ("small", "petit"), ("red", "rouge"), ("black", "noir"),
    ("white", "blanc"), ("old", "vieux"), ("young", "jeune"), ("happy", "heureux"),
    ("sad", "triste"), ("green", "vert"), ("blue", "bleu"), ("tall", "haut"),
]  # fmt: skip
_VERBS = [
    ("sees", "voit"), ("likes", "aime"), ("eats", "mange"), ("follows", "suit"),
    ("finds", "trouve"), ("watches", "regarde"), ("helps", "aide"), ("calls", "appelle"),
    ("hears", "entend"), ("knows", "connait"), ("paints", "peint"), ("chases", "chasse"),
]  # fmt: skip
_PREPOSITIONS = [
    ("near", "pres"), ("behind", "derriere"), ("in", "dans"), ("under", "sous"),
    ("with", "avec"),
]  # fmt: skip
_LEXICON = _DETERMINERS + _NOUNS + _ADJECTIVES + _VERBS + _PREPOSITIONS


class Vocab:
    """A fixed list of tokens: id ``i`` is ``tokens[i]``; ``pad``, ``bos``, ``eos`` are 0, 1, 2.

    Every vocabulary of the package starts with the same three special tokens, so models and
    decoders find them without a vocabulary: ``<pad>`` (id 0) fills sequences beyond their
    length, ``<bos>`` (id 1) starts a target sentence, ``<eos>`` (id 2) ends every sentence.

    Args:
        words: The words after the three special tokens, without repeats.

    Raises:
        ValueError: If a word repeats or is a special token.

    Example:
        >>> vocab = Vocab(["cat", "dog"])
        >>> len(vocab), vocab.tokens
        (5, ['<pad>', '<bos>', '<eos>', 'cat', 'dog'])
        >>> vocab.encode(["dog", "cat", "<eos>"])
        [4, 3, 2]
        >>> vocab.decode([1, 4, 3, 2, 0, 0])  # stops at eos, skips pad and bos
        ['dog', 'cat']
    """

    pad: int = 0
    bos: int = 1
    eos: int = 2

    def __init__(self, words: Sequence[str]) -> None:
        tokens = [PAD, BOS, EOS, *words]
        repeated = sorted(token for token, count in Counter(tokens).items() if count > 1)
        if repeated:
            msg = f"words must be distinct and not special tokens; got repeats of {repeated}"
            raise ValueError(msg)
        self.tokens: list[str] = tokens
        self._ids = {token: i for i, token in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(tuple(self.tokens))

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {', '.join(self.tokens[:6])}, ...)"

    def encode(self, tokens: list[str]) -> list[int]:
        """Map tokens to their ids.

        Args:
            tokens: Tokens of this vocabulary (special tokens included).

        Returns:
            One id per token.

        Raises:
            ValueError: If a token is not in the vocabulary.

        Example:
            >>> Vocab(["cat"]).encode(["<bos>", "cat"])
            [1, 3]
        """
        ids = []
        for token in tokens:
            if token not in self._ids:
                msg = f"tokens must be in the vocabulary; got unknown token {token!r}"
                raise ValueError(msg)
            ids.append(self._ids[token])
        return ids

    def decode(self, ids: Sequence[int] | Tensor) -> list[str]:
        """Map ids to tokens, stopping at the first ``eos`` and skipping ``pad`` and ``bos``.

        Args:
            ids: A sequence or a 1-D tensor of ids in ``[0, len(vocab))``.

        Returns:
            The words before the first ``eos``.

        Raises:
            ValueError: If an id is outside ``[0, len(vocab))`` or a tensor is not 1-D.

        Example:
            >>> Vocab(["cat"]).decode(torch.tensor([3, 3, 2, 3]))
            ['cat', 'cat']
        """
        if isinstance(ids, Tensor):
            if ids.ndim != 1:
                msg = f"ids must be a 1-D tensor (T,); got shape {tuple(ids.shape)}"
                raise ValueError(msg)
            ids = [int(i) for i in ids.tolist()]
        words = []
        for i in ids:
            if not 0 <= i < len(self):
                msg = f"ids must lie in [0, len(vocab)) = [0, {len(self)}); got {i}"
                raise ValueError(msg)
            if i == self.eos:
                break
            if i not in (self.pad, self.bos):
                words.append(self.tokens[i])
        return words


SOURCE_VOCAB = Vocab([english for english, _ in _LEXICON])
TARGET_VOCAB = Vocab([french for _, french in _LEXICON])
_TRANSLATE = dict(_LEXICON)


class TranslationData(NamedTuple):
    """Sentence pairs as padded id tensors, with the gold alignment of every target token.

    Attributes:
        src: ``(N, S)`` int64 source ids, each sentence ended by ``eos``, then ``pad``.
        src_lens: ``(N,)`` int64 source lengths, ``eos`` included.
        tgt: ``(N, T)`` int64 target ids: ``bos``, the words, ``eos``, then ``pad``.
        tgt_lens: ``(N,)`` int64 target lengths, ``bos`` and ``eos`` included.
        alignment: ``(N, T)`` int64: for each target token, the position in ``src`` of the
            source word it translates; ``-1`` for ``bos``, ``eos``, padding and words
            without a source.
        src_vocab: The source :class:`Vocab`.
        tgt_vocab: The target :class:`Vocab`.

    Example:
        >>> data = translation_data(2, seed=0)
        >>> data.src_vocab.decode(data.src[0]), data.tgt_vocab.decode(data.tgt[0])
        (['my', 'woman', 'likes', 'this', 'big', 'river'], ['mon', 'femme', 'aime', 'ce', 'riviere', 'grand'])
        >>> data.alignment[0, : int(data.tgt_lens[0])]  # bos, words, eos: the adjective crosses
        tensor([-1,  0,  1,  2,  3,  5,  4, -1])
        >>> data.select(torch.tensor([1])).src.shape[0]
        1
    """

    src: Tensor
    src_lens: Tensor
    tgt: Tensor
    tgt_lens: Tensor
    alignment: Tensor
    src_vocab: Vocab
    tgt_vocab: Vocab

    def select(self, index: Tensor) -> TranslationData:
        """Keep the pairs ``index`` (integer ids or a boolean mask ``(N,)``), trimming padding.

        Args:
            index: A 1-D integer or boolean tensor that indexes the pairs.

        Returns:
            The selected pairs, padded to their own longest source and target.

        Example:
            >>> data = translation_data(5)
            >>> data.src_lens
            tensor([10, 12, 11,  7, 11])
            >>> short = data.select(data.src_lens <= 10)
            >>> short.src_lens, short.src.shape  # padding trimmed to the longest kept source
            (tensor([10,  7]), torch.Size([2, 10]))
        """
        src_lens, tgt_lens = self.src_lens[index], self.tgt_lens[index]
        s = int(src_lens.max()) if src_lens.numel() else 1
        t = int(tgt_lens.max()) if tgt_lens.numel() else 1
        return TranslationData(
            self.src[index][:, :s],
            src_lens,
            self.tgt[index][:, :t],
            tgt_lens,
            self.alignment[index][:, :t],
            self.src_vocab,
            self.tgt_vocab,
        )


def _noun_phrase(
    det: int, adj: int, noun: int, start: int
) -> tuple[list[str], list[str], list[int]]:
    """One noun phrase: source words, target words and the target words' source positions."""
    det_en, det_fr = _DETERMINERS[det]
    noun_en, noun_fr = _NOUNS[noun]
    if adj < 0:
        return [det_en, noun_en], [det_fr, noun_fr], [start, start + 1]
    adj_en, adj_fr = _ADJECTIVES[adj]
    # DET ADJ NOUN -> DET NOUN ADJ: the alignment crosses
    return [det_en, adj_en, noun_en], [det_fr, noun_fr, adj_fr], [start, start + 2, start + 1]


def translation_data(num_pairs: int = 2000, *, seed: int = 0) -> TranslationData:
    r"""Generate sentence pairs of the toy translation task, reproducibly.

    .. math::

        \text{DET}\;\text{ADJ}\;\text{NOUN} \;\mapsto\; \text{DET}\;\text{NOUN}\;\text{ADJ},
        \qquad \text{every other word} \;\mapsto\; \text{its translation}

    Each sentence is ``NP VERB NP`` followed, with probability 1/2, by ``PREP NP``; each noun
    phrase has an adjective with probability 1/2; words are drawn uniformly. The seed picks
    the sentences, not the language: the vocabularies are the same for every seed and size
    (53 words per side plus ``<pad>``, ``<bos>``, ``<eos>``), so ``translation_data(300,
    seed=1)`` is a test set for a model trained on ``seed=0`` (use :func:`held_out` to drop
    the pairs whose source the training set contains). Uses a local ``torch.Generator``;
    the global RNG is never touched.

    Args:
        num_pairs: ``N``, the number of sentence pairs.
        seed: Seed of the local generator.

    Returns:
        :class:`TranslationData` with sources of 5 to 11 words (plus ``eos``).

    Raises:
        TypeError: If ``num_pairs`` or ``seed`` is not an int.
        ValueError: If ``num_pairs < 1``.

    Example:
        >>> data = translation_data(100, seed=3)
        >>> data.src.shape[0], len(data.src_vocab), len(data.tgt_vocab)
        (100, 56, 56)
        >>> bool((data.tgt[:, 0] == data.tgt_vocab.bos).all())
        True
    """
    check_int("num_pairs", num_pairs, minimum=1)
    check_int("seed", seed, minimum=-(2**63))
    generator = torch.Generator().manual_seed(seed)

    def draw(high: int) -> list[int]:
        return torch.randint(high, (num_pairs,), generator=generator).tolist()

    def draw_np() -> tuple[list[int], list[int], list[int]]:
        has_adj = draw(2)
        adj = [a if has else -1 for a, has in zip(draw(len(_ADJECTIVES)), has_adj, strict=True)]
        return draw(len(_DETERMINERS)), adj, draw(len(_NOUNS))

    subject, verb, obj = draw_np(), draw(len(_VERBS)), draw_np()
    has_pp, prep, pp = draw(2), draw(len(_PREPOSITIONS)), draw_np()

    sources, targets, alignments = [], [], []
    for n in range(num_pairs):
        src, tgt, align = _noun_phrase(subject[0][n], subject[1][n], subject[2][n], 0)
        verb_en, verb_fr = _VERBS[verb[n]]
        src, tgt, align = [*src, verb_en], [*tgt, verb_fr], [*align, len(src)]
        phrase = _noun_phrase(obj[0][n], obj[1][n], obj[2][n], len(src))
        src, tgt, align = src + phrase[0], tgt + phrase[1], align + phrase[2]
        if has_pp[n]:
            prep_en, prep_fr = _PREPOSITIONS[prep[n]]
            src, tgt, align = [*src, prep_en], [*tgt, prep_fr], [*align, len(src)]
            phrase = _noun_phrase(pp[0][n], pp[1][n], pp[2][n], len(src))
            src, tgt, align = src + phrase[0], tgt + phrase[1], align + phrase[2]
        sources.append(SOURCE_VOCAB.encode([*src, EOS]))
        targets.append(TARGET_VOCAB.encode([BOS, *tgt, EOS]))
        alignments.append([-1, *align, -1])

    src_lens = torch.tensor([len(s) for s in sources])
    tgt_lens = torch.tensor([len(t) for t in targets])
    src_ids = torch.full((num_pairs, int(src_lens.max())), Vocab.pad)
    tgt_ids = torch.full((num_pairs, int(tgt_lens.max())), Vocab.pad)
    alignment = torch.full_like(tgt_ids, -1)
    for n in range(num_pairs):
        src_ids[n, : len(sources[n])] = torch.tensor(sources[n])
        tgt_ids[n, : len(targets[n])] = torch.tensor(targets[n])
        alignment[n, : len(alignments[n])] = torch.tensor(alignments[n])
    return TranslationData(
        src_ids, src_lens, tgt_ids, tgt_lens, alignment, SOURCE_VOCAB, TARGET_VOCAB
    )


def held_out(data: TranslationData, seen: TranslationData) -> TranslationData:
    r"""Drop the pairs of ``data`` whose source sentence also occurs in ``seen``.

    .. math::

        \{(x, y) \in \text{data} : x \notin \text{sources}(\text{seen})\}

    Args:
        data: The candidate test pairs.
        seen: The training pairs.

    Returns:
        The pairs of ``data`` that are truly held out.

    Example:
        >>> train = translation_data(50, seed=0)
        >>> held_out(train, train).src.shape[0], held_out(translation_data(9, seed=1), train).src.shape[0]
        (0, 9)
    """
    known = {
        tuple(row[:length].tolist()) for row, length in zip(seen.src, seen.src_lens, strict=True)
    }
    keep = torch.tensor(
        [
            tuple(row[:length].tolist()) not in known
            for row, length in zip(data.src, data.src_lens, strict=True)
        ],
        dtype=torch.bool,
    )
    return data.select(keep)


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu(prediction: list[str], reference: list[str], *, max_n: int = 4) -> float:
    r"""Sentence BLEU of Papineni et al. (2002): clipped n-gram precisions and a brevity penalty.

    .. math::

        \mathrm{BLEU} = \min\!\left(1, e^{1 - r/c}\right)
        \exp\!\left(\frac{1}{n_{\max}} \sum_{n=1}^{n_{\max}} \log p_n\right)

    where :math:`p_n` is the fraction of the prediction's n-grams found in the reference
    (each reference n-gram counted at most as often as it occurs there), :math:`c` the
    prediction's length and :math:`r` the reference's. Without smoothing: a prediction
    with no matching n-gram for some :math:`n \le n_{\max}` (or shorter than
    :math:`n_{\max}`) scores 0.

    Args:
        prediction: The predicted tokens.
        reference: The reference tokens.
        max_n: :math:`n_{\max}`, the longest n-gram.

    Returns:
        A score in ``[0, 1]``; ``1.0`` for identical sentences of at least ``max_n`` tokens.

    Raises:
        TypeError: If ``max_n`` is not an int.
        ValueError: If ``max_n < 1``.

    Example:
        >>> bleu("le chat noir voit".split(), "le chat noir voit".split())
        1.0
        >>> round(bleu("le chat voit".split(), "le chat noir voit".split(), max_n=2), 4)
        0.5067
    """
    check_int("max_n", max_n, minimum=1)
    if not prediction:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        predicted, wanted = _ngrams(prediction, n), _ngrams(reference, n)
        total = sum(predicted.values())
        matches = sum(min(count, wanted[gram]) for gram, count in predicted.items())
        if matches == 0:
            return 0.0
        log_precision += math.log(matches / total) / max_n
    c, r = len(prediction), len(reference)
    brevity = 1.0 if c > r else math.exp(1 - r / c)
    return brevity * math.exp(log_precision)
