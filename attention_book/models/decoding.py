"""Greedy decoding: translate token by token, keeping the attention weights of each step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from attention_book._checks import check_int, check_lengths, check_tensor, fmt_shape

__all__ = ["Translation", "greedy_translate"]

_PAD, _BOS, _EOS = 0, 1, 2  # the same ids in every vocabulary of the package


class Translation(NamedTuple):
    """What greedy decoding produced.

    Attributes:
        ids: ``(N, T')`` int64 target ids without ``bos``: the words, ``eos``, then ``pad``
            (a translation that reached ``max_len`` has no ``eos``).
        weights: ``(N, T', S)``, the attention weights that step ``t`` used to choose
            ``ids[:, t]`` (for the Transformer: the last decoder layer's cross-attention
            averaged over heads); 0 after a sentence's ``eos``. ``None`` for a model
            without attention.

    Example:
        >>> ids, weights = Translation(torch.tensor([[5, 2]]), None)
        >>> ids.shape, weights
        (torch.Size([1, 2]), None)
    """

    ids: Tensor
    weights: Tensor | None


def _attention_weights(output: object) -> Tensor | None:
    """The decoder-to-source weights ``(N, T, S)`` of a model's output, or ``None``.

    ``weights`` for :class:`~attention_book.models.Seq2SeqOutput`; the last layer's
    ``cross_weights`` ``(N, H, T, S)`` averaged over heads for the Transformer's output.
    """
    cross = getattr(output, "cross_weights", None)
    if cross is not None:
        last: Tensor = cross[-1]
        return last.mean(dim=1)  # (N, H, T, S) -> (N, T, S)
    weights: Tensor | None = getattr(output, "weights", None)
    return weights


@contextmanager
def _evaluating(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def greedy_translate(
    model: nn.Module, src: Tensor, src_lens: Tensor, *, max_len: int = 20
) -> Translation:
    r"""Translate by choosing the most probable token at every step, until ``eos``.

    .. math::

        \hat y_t = \arg\max_{y} p(y \mid \hat y_{<t}, \mathbf x), \qquad \hat y_0 = \text{bos}

    Step ``t`` runs the model's teacher-forcing ``forward`` on ``bos`` and the tokens chosen
    so far and reads its last position, so any model with the
    ``forward(src, src_lens, tgt_in)`` signature works (:class:`~attention_book.models.Seq2Seq`,
    the Transformer). Each step recomputes the whole prefix, :math:`O(T'^2)` steps in all:
    simple, and cheap for sentences this short. After a sentence's ``eos`` it is fed
    ``pad``, so running ``forward`` on ``bos`` followed by ``ids`` reproduces every
    step's weights. The model runs in eval mode (and is put back in its mode afterwards),
    under :func:`torch.no_grad`.

    Args:
        model: An encoder-decoder.
        src: ``(N, S)`` source ids.
        src_lens: ``(N,)`` source lengths in ``[1, S]``.
        max_len: ``T'`` at most: the number of tokens generated, ``eos`` included.

    Returns:
        :class:`Translation` with ``ids (N, T')`` and ``weights (N, T', S)``; decoding stops
        as soon as every sentence has its ``eos``.

    Raises:
        TypeError: If ``src`` or ``src_lens`` is not a tensor or ``max_len`` not an int.
        ValueError: If ``max_len < 1``, ``src`` is not 2-D or a length is out of range
            (the model checks the ids).

    Example:
        >>> from attention_book.models import AttentionDecoder, Seq2Seq, Seq2SeqEncoder
        >>> _ = torch.manual_seed(0)
        >>> model = Seq2Seq(Seq2SeqEncoder(10, 8, 16), AttentionDecoder(12, 8, 16, encoder_size=32))
        >>> src, src_lens = torch.tensor([[4, 5, 2], [6, 2, 0]]), torch.tensor([3, 2])
        >>> ids, weights = greedy_translate(model, src, src_lens, max_len=5)
        >>> ids.shape[1] <= 5, weights.shape[0], weights.shape[2]  # (N, T', S)
        (True, 2, 3)
    """
    src = check_tensor("src", src)
    check_int("max_len", max_len, minimum=1)
    if src.ndim != 2:
        msg = f"src must have shape (N, S); got {fmt_shape(src.shape)}"
        raise ValueError(msg)
    batch, num_src = src.shape
    check_lengths("src_lens", src_lens, batch, num_src)
    prefix = torch.full((batch, 1), _BOS, dtype=torch.long, device=src.device)  # (N, 1)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    steps: list[Tensor] = []
    with _evaluating(model), torch.no_grad():
        for _ in range(max_len):
            output = model(src, src_lens, prefix)
            token = output.logits[:, -1].argmax(dim=-1)  # (N, t, V) -> (N,)
            token = torch.where(done, _PAD, token)  # pad after eos
            weights = _attention_weights(output)
            if weights is not None:
                # the last step's weights, 0 after eos: (N, t, S) -> (N, S)
                steps.append(torch.where(done[:, None], 0.0, weights[:, -1]))
            prefix = torch.cat([prefix, token[:, None]], dim=1)
            done = done | (token == _EOS)
            if bool(done.all()):
                break
    return Translation(prefix[:, 1:], torch.stack(steps, dim=1) if steps else None)
