"""Part II of the book: attention inside models that learn.

A toy translation task (:func:`translation_data`), an RNN encoder-decoder whose decoder
attends to the encoder's states with Bahdanau's or Luong's rule (:class:`Seq2Seq`), greedy
decoding that keeps the attention weights (:func:`greedy_translate`), and a training loop
with the two measures the chapters report (:func:`token_accuracy`,
:func:`attention_agreement`), and the Transformer: encoder and decoder blocks with
PyTorch's layout (:class:`TransformerEncoderBlock`, :class:`TransformerDecoderBlock`) and a
small encoder-decoder (:class:`Transformer`) that trains on the same task. Special token
ids are the same everywhere: ``pad`` 0, ``bos`` 1, ``eos`` 2.

Example:
    >>> from attention_book.models import translation_data
    >>> data = translation_data(10)
    >>> data.src_vocab.decode(data.src[0])
    ['this', 'dog', 'eats', 'a', 'bird', 'near', 'the', 'black', 'teacher']
    >>> data.tgt_vocab.decode(data.tgt[0])  # the adjective follows the noun
    ['ce', 'chien', 'mange', 'un', 'oiseau', 'pres', 'le', 'professeur', 'noir']
"""

from __future__ import annotations

from attention_book.models.decoding import Translation, greedy_translate
from attention_book.models.seq2seq import (
    AttentionDecoder,
    QueryName,
    ScoreName,
    Seq2Seq,
    Seq2SeqEncoder,
    Seq2SeqOutput,
)
from attention_book.models.training import (
    attention_agreement,
    sequence_loss,
    token_accuracy,
    train_seq2seq,
)
from attention_book.models.transformer import Transformer, TransformerOutput
from attention_book.models.transformer_blocks import (
    ActivationName,
    DecoderOutput,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
)
from attention_book.models.translation import (
    TranslationData,
    Vocab,
    bleu,
    held_out,
    translation_data,
)

__all__ = [
    "ActivationName",
    "AttentionDecoder",
    "DecoderOutput",
    "QueryName",
    "ScoreName",
    "Seq2Seq",
    "Seq2SeqEncoder",
    "Seq2SeqOutput",
    "Transformer",
    "TransformerDecoderBlock",
    "TransformerEncoderBlock",
    "TransformerOutput",
    "Translation",
    "TranslationData",
    "Vocab",
    "attention_agreement",
    "bleu",
    "greedy_translate",
    "held_out",
    "sequence_loss",
    "token_accuracy",
    "train_seq2seq",
    "translation_data",
]
