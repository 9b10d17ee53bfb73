"""Train an encoder-decoder with teacher forcing, and measure what it learnt.

Any model whose ``forward(src, src_lens, tgt_in)`` returns an object with ``logits``
``(N, T, V)`` trains here: :class:`~attention_book.models.Seq2Seq` and the Transformer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attention_book._checks import check_int
from attention_book.models.decoding import _attention_weights, _evaluating, greedy_translate
from attention_book.models.translation import TranslationData, Vocab

__all__ = ["attention_agreement", "sequence_loss", "token_accuracy", "train_seq2seq"]


def _model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


def _check_data(data: object) -> TranslationData:
    if not isinstance(data, TranslationData):
        msg = f"data must be a TranslationData; got {type(data).__name__}"
        raise TypeError(msg)
    return data


def sequence_loss(logits: Tensor, labels: Tensor) -> tuple[Tensor, int]:
    r"""Sum of the cross-entropies of the non-padding labels, and how many there are.

    .. math::

        \ell = -\sum_{n, t:\, y_{n,t} \ne \text{pad}} \log \operatorname{softmax}(
        \text{logits}_{n,t})_{y_{n,t}}

    Args:
        logits: ``(N, T, V)``.
        labels: ``(N, T)`` target ids; ``pad`` (id 0) is ignored.

    Returns:
        ``(loss, count)``: the summed loss (a 0-dim tensor) and the number of labels that
        are not ``pad``; ``loss / count`` is the mean over tokens.

    Example:
        >>> logits = torch.zeros(1, 3, 4)
        >>> loss, count = sequence_loss(logits, torch.tensor([[3, 2, 0]]))
        >>> count, round((loss / count).item(), 4)  # log 4 per token
        (2, 1.3863)
    """
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),  # (N, T, V) -> (N T, V)
        labels.reshape(-1),  # (N, T) -> (N T,)
        ignore_index=Vocab.pad,
        reduction="sum",
    )
    return loss, int((labels != Vocab.pad).sum())


def train_seq2seq(
    model: nn.Module,
    data: TranslationData,
    *,
    epochs: int = 6,
    lr: float = 0.005,
    batch_size: int = 64,
    max_grad_norm: float = 1.0,
    seed: int = 0,
) -> list[float]:
    r"""Train with teacher forcing, Adam and gradient clipping; return the loss of each epoch.

    .. math::

        \mathcal L = \frac{1}{|\{(n, t): y_{n,t} \ne \text{pad}\}|}
        \sum_{n, t:\, y_{n,t} \ne \text{pad}} -\log p_\theta(y_{n,t} \mid y_{n,<t},
        \mathbf x_n)

    Each step feeds ``tgt[:, :-1]`` (``bos`` and the reference) and scores the predictions
    against ``tgt[:, 1:]``; the loss is the mean over the batch's non-padding target tokens,
    so padding changes nothing. Each batch is trimmed to its longest sentences. The pairs
    are shuffled every epoch by a local generator seeded with ``seed``, and dropout draws
    from the global generator inside :func:`torch.random.fork_rng`, seeded with ``seed``:
    the same model and data give the same losses, and the caller's global random state is
    left as it was. The model trains on its own device and is left in the train/eval mode
    it came in.

    Args:
        model: A module with ``forward(src, src_lens, tgt_in)`` returning an object with
            ``logits (N, T, V)``.
        data: The training pairs.
        epochs: Passes over the data.
        lr: Adam's learning rate.
        batch_size: Pairs per step.
        max_grad_norm: The gradients' global norm is clipped to this value.
        seed: Seed of the shuffling and of dropout.

    Returns:
        The mean loss per target token of each epoch.

    Raises:
        TypeError: If ``data`` is not a :class:`TranslationData` or a count is not an int.
        ValueError: If ``epochs``, ``batch_size``, ``lr`` or ``max_grad_norm`` is not
            positive.

    Example:
        >>> from attention_book.models import AttentionDecoder, Seq2Seq, Seq2SeqEncoder, translation_data
        >>> data = translation_data(64)
        >>> src_vocab, tgt_vocab = len(data.src_vocab), len(data.tgt_vocab)
        >>> model = Seq2Seq(Seq2SeqEncoder(src_vocab, 8, 8), AttentionDecoder(tgt_vocab, 8, 8, encoder_size=16))
        >>> losses = train_seq2seq(model, data, epochs=3)
        >>> len(losses), losses[-1] < losses[0]
        (3, True)
    """
    data = _check_data(data)
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_int("seed", seed, minimum=-(2**63))
    for name, value in (("lr", lr), ("max_grad_norm", max_grad_norm)):
        if not value > 0:
            msg = f"{name} must be positive; got {value}"
            raise ValueError(msg)
    device = _model_device(model)
    src, src_lens = data.src.to(device), data.src_lens.to(device)
    tgt, tgt_lens = data.tgt.to(device), data.tgt_lens.to(device)
    num_pairs = src.shape[0]
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    was_training = model.training
    model.train()
    losses = []
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for _ in range(epochs):
            total, count = 0.0, 0
            order = torch.randperm(num_pairs, generator=generator).to(device)
            for batch in torch.split(order, batch_size):
                s, t = int(src_lens[batch].max()), int(tgt_lens[batch].max())
                tgt_batch = tgt[batch, :t]  # (B, T)
                logits = model(src[batch, :s], src_lens[batch], tgt_batch[:, :-1]).logits
                loss, tokens = sequence_loss(logits, tgt_batch[:, 1:])
                optimizer.zero_grad()
                torch.autograd.backward(loss / tokens)
                nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                optimizer.step()
                total, count = total + loss.item(), count + tokens
            losses.append(total / count)
    model.train(was_training)
    return losses


def token_accuracy(model: nn.Module, data: TranslationData, *, max_len: int = 20) -> float:
    r"""The fraction of reference tokens (words and ``eos``) that greedy decoding reproduces.

    .. math::

        \text{accuracy} = \frac{\sum_n \sum_{t=1}^{T_n} [\hat y_{n,t} = y_{n,t}]}
        {\sum_n T_n}

    where :math:`y_{n,1..T_n}` is reference ``n`` after ``bos`` (its words and ``eos``) and
    :math:`\hat y_{n,t}` the ``t``-th token of :func:`greedy_translate` (``pad`` where the
    translation is shorter), compared position by position.

    Args:
        model: An encoder-decoder (:class:`~attention_book.models.Seq2Seq`, Transformer).
        data: The pairs to translate.
        max_len: Longest translation, in tokens.

    Returns:
        The accuracy, in ``[0, 1]``.

    Raises:
        TypeError: If ``data`` is not a :class:`TranslationData`.

    Example:
        >>> from attention_book.models import AttentionDecoder, Seq2Seq, Seq2SeqEncoder, translation_data
        >>> data = translation_data(4)
        >>> model = Seq2Seq(Seq2SeqEncoder(56, 8, 8), AttentionDecoder(56, 8, 8, encoder_size=16))
        >>> 0.0 <= token_accuracy(model, data) <= 1.0
        True
    """
    data = _check_data(data)
    device = _model_device(model)
    ids = greedy_translate(
        model, data.src.to(device), data.src_lens.to(device), max_len=max_len
    ).ids
    reference = data.tgt[:, 1:].to(device)  # words and eos, then pad: (N, T - 1)
    width = reference.shape[1]
    predicted = torch.full_like(reference, Vocab.pad)
    keep = min(width, ids.shape[1])
    predicted[:, :keep] = ids[:, :keep]
    counted = reference != Vocab.pad
    return float((predicted == reference)[counted].float().mean())


def attention_agreement(model: nn.Module, data: TranslationData) -> float:
    r"""How often the step that predicts a word attends most to the word's gold source.

    .. math::

        \text{agreement} = \frac{1}{|\mathcal A|} \sum_{(n, t) \in \mathcal A}
        \left[\arg\max_j \alpha_{n,t,j} = a_{n,t+1}\right],
        \qquad \mathcal A = \{(n, t) : a_{n,t+1} \ge 0\}

    With teacher forcing, ``tgt_in = tgt[:, :-1]`` and the labels ``tgt[:, 1:]``: row
    ``t`` of the weights belongs to the step that predicts ``tgt[:, t + 1]``, whose gold
    source position is ``alignment[:, t + 1]`` (``-1``, not counted, for ``eos``, padding
    and words without a source). For the Transformer the weights are the last decoder
    layer's cross-attention averaged over heads.

    Args:
        model: An encoder-decoder with attention.
        data: Pairs with their gold alignment.

    Returns:
        The agreement, in ``[0, 1]``.

    Raises:
        TypeError: If ``data`` is not a :class:`TranslationData`.
        ValueError: If the model returns no attention weights (``score=None``).

    Example:
        >>> from attention_book.models import AttentionDecoder, Seq2Seq, Seq2SeqEncoder, translation_data
        >>> data = translation_data(4)
        >>> model = Seq2Seq(Seq2SeqEncoder(56, 8, 8), AttentionDecoder(56, 8, 8, encoder_size=16))
        >>> 0.0 <= attention_agreement(model, data) <= 1.0
        True
    """
    data = _check_data(data)
    device = _model_device(model)
    with _evaluating(model), torch.no_grad():
        output = model(data.src.to(device), data.src_lens.to(device), data.tgt[:, :-1].to(device))
    weights = _attention_weights(output)  # (N, T - 1, S)
    if weights is None:
        msg = "model must return attention weights; got a model without attention (weights None)"
        raise ValueError(msg)
    gold = data.alignment[:, 1:].to(device)  # the source position of each label: (N, T - 1)
    aligned = gold >= 0
    return float((weights.argmax(dim=-1) == gold)[aligned].float().mean())
