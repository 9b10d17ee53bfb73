"""The Transformer against PyTorch's encoder and decoder stacks, its masks, and its training."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from attention_book import MultiHeadAttention, get_device, sinusoidal_positions
from attention_book.models import (
    Transformer,
    TransformerDecoderBlock,
    TransformerEncoderBlock,
    TransformerOutput,
    TranslationData,
    attention_agreement,
    greedy_translate,
    held_out,
    token_accuracy,
    train_seq2seq,
    translation_data,
)

SRC_V, TGT_V = 11, 13


def small_model(**options: object) -> Transformer:
    return Transformer(SRC_V, TGT_V, embed_dim=8, num_heads=2, ffn_dim=16, **options)  # type: ignore[arg-type]


def batch() -> tuple[Tensor, Tensor, Tensor]:
    """Three pairs: source ids padded with 0 beyond their lengths, targets starting with bos."""
    src = torch.tensor([[5, 6, 7, 8, 2], [9, 4, 2, 0, 0], [3, 2, 0, 0, 0]])  # (N, S)
    src_lens = torch.tensor([5, 3, 2])
    tgt_in = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 2], [1, 12, 2, 0]])  # (N, T)
    return src, src_lens, tgt_in


def copy_attention(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Pack our q, k, v projections into PyTorch's in_proj."""
    with torch.no_grad():
        theirs.in_proj_weight.copy_(
            torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight])
        )
        theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        theirs.out_proj.load_state_dict(ours.out_proj.state_dict())


def pytorch_reference(model: Transformer, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
    """The same weights in PyTorch's nn.TransformerEncoder/Decoder, with PyTorch's masks."""
    E, norm_first = model.embed_dim, model.norm_first
    first = model.encoder_layers[0]
    options = {
        "d_model": E,
        "nhead": first.num_heads,
        "dim_feedforward": first.ffn_dim,
        "dropout": 0.0,
        "batch_first": True,
        "norm_first": norm_first,
        "dtype": torch.float64,
    }
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(**options),  # type: ignore[arg-type]
        len(model.encoder_layers),
        norm=nn.LayerNorm(E, dtype=torch.float64) if norm_first else None,
        enable_nested_tensor=False,
    )
    decoder = nn.TransformerDecoder(
        nn.TransformerDecoderLayer(**options),  # type: ignore[arg-type]
        len(model.decoder_layers),
        norm=nn.LayerNorm(E, dtype=torch.float64) if norm_first else None,
    )
    for ours, theirs in zip(model.encoder_layers, encoder.layers, strict=True):
        assert isinstance(ours, TransformerEncoderBlock)
        copy_attention(ours.self_attn, theirs.self_attn)
        for name in ("linear1", "linear2", "norm1", "norm2"):
            getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())
    for ours, theirs in zip(model.decoder_layers, decoder.layers, strict=True):
        assert isinstance(ours, TransformerDecoderBlock)
        copy_attention(ours.self_attn, theirs.self_attn)
        copy_attention(ours.cross_attn, theirs.multihead_attn)
        for name in ("linear1", "linear2", "norm1", "norm2", "norm3"):
            getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())
    if norm_first:
        assert encoder.norm is not None
        assert decoder.norm is not None
        encoder.norm.load_state_dict(model.encoder_norm.state_dict())
        decoder.norm.load_state_dict(model.decoder_norm.state_dict())
    S, T = src.shape[1], tgt_in.shape[1]
    positions = sinusoidal_positions(max(S, T), E, dtype=torch.float64)
    x = model.src_embedding.weight[src] * math.sqrt(E) + positions[:S]
    y = model.tgt_embedding.weight[tgt_in] * math.sqrt(E) + positions[:T]
    padding = torch.arange(S) >= src_lens[:, None]  # PyTorch's polarity: True = ignore
    memory = encoder(x, src_key_padding_mask=padding)
    future = torch.ones(T, T, dtype=torch.bool).triu(1)  # True = ignore
    hidden = decoder(y, memory, tgt_mask=future, memory_key_padding_mask=padding)
    logits: Tensor = model.output(hidden)
    return logits


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_matches_pytorchs_stacks(norm_first: bool) -> None:
    model = small_model(norm_first=norm_first, num_encoder_layers=2, num_decoder_layers=3).double()
    src, src_lens, tgt_in = batch()
    out = model(src, src_lens, tgt_in)
    assert isinstance(out, TransformerOutput)
    torch.testing.assert_close(out.logits, pytorch_reference(model, src, src_lens, tgt_in))


def test_shapes_and_one_weight_tensor_per_layer() -> None:
    model = small_model(num_encoder_layers=3, num_decoder_layers=2)
    src, src_lens, tgt_in = batch()
    logits, encoder_weights, self_weights, cross_weights = model(src, src_lens, tgt_in)
    assert logits.shape == (3, 4, TGT_V)  # (N, T, V)
    assert [w.shape for w in encoder_weights] == [(3, 2, 5, 5)] * 3  # (N, H, S, S)
    assert [w.shape for w in self_weights] == [(3, 2, 4, 4)] * 2  # (N, H, T, T)
    assert [w.shape for w in cross_weights] == [(3, 2, 4, 5)] * 2  # (N, H, T, S)


def test_padded_source_keys_get_exactly_zero_and_rows_sum_to_one() -> None:
    model = small_model()
    src, src_lens, tgt_in = batch()
    out = model(src, src_lens, tgt_in)
    for weights in (*out.encoder_weights, *out.cross_weights):
        for n, length in enumerate(src_lens.tolist()):
            assert torch.all(weights[n, ..., length:] == 0)
            assert torch.all(weights[n, ..., :length] > 0)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    for weights in out.decoder_self_weights:
        assert torch.all(weights.triu(1) == 0)  # causal: target position t sees 0..t


def test_extra_source_padding_changes_no_logit() -> None:
    model = small_model().double()
    src, src_lens, tgt_in = batch()
    padded = torch.cat([src, torch.zeros(3, 4, dtype=torch.long)], dim=1)  # (N, S + 4)
    first, second = model(src, src_lens, tgt_in), model(padded, src_lens, tgt_in)
    torch.testing.assert_close(second.logits, first.logits)
    torch.testing.assert_close(second.cross_weights[-1][..., :5], first.cross_weights[-1])
    # and what stands in the padding does not matter either
    garbage = src.clone()
    garbage[2, 2:] = 7
    torch.testing.assert_close(model(garbage, src_lens, tgt_in).logits, first.logits)


def test_target_tokens_after_a_position_do_not_affect_it() -> None:
    model = small_model().double()
    src, src_lens, tgt_in = batch()
    logits = model(src, src_lens, tgt_in).logits
    changed = tgt_in.clone()
    changed[:, 2:] = torch.tensor([3, 0])  # rewrite positions 2 and 3 (pad or words)
    other = model(src, src_lens, changed).logits
    torch.testing.assert_close(other[:, :2], logits[:, :2])
    assert not torch.allclose(other[:, 2:], logits[:, 2:])


def test_encode_and_decode_compose_to_forward() -> None:
    model = small_model()
    src, src_lens, tgt_in = batch()
    memory, encoder_weights = model.encode(src, src_lens)
    assert memory.shape == (3, 5, 8)
    logits, self_weights, cross_weights = model.decode(tgt_in, memory, src_lens)
    out = model(src, src_lens, tgt_in)
    assert torch.equal(out.logits, logits)
    assert all(torch.equal(a, b) for a, b in zip(out.cross_weights, cross_weights, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(out.encoder_weights, encoder_weights, strict=True))
    assert all(
        torch.equal(a, b) for a, b in zip(out.decoder_self_weights, self_weights, strict=True)
    )


def test_embeddings_are_scaled_and_the_final_norm_follows_norm_first() -> None:
    post, pre = small_model(), small_model(norm_first=True)
    assert isinstance(post.encoder_norm, nn.Identity)
    assert isinstance(post.decoder_norm, nn.Identity)
    assert isinstance(pre.encoder_norm, nn.LayerNorm)
    assert isinstance(pre.decoder_norm, nn.LayerNorm)
    torch.manual_seed(0)
    big = Transformer(50, 50, embed_dim=64, num_heads=4)
    scaled = big.src_embedding.weight.detach() * math.sqrt(
        64
    )  # what the blocks see, before positions
    assert 0.8 < float(scaled.std()) < 1.2  # unit variance, like the sinusoidal table
    assert "norm_first=True" in repr(pre)


def test_dropout_only_in_training() -> None:
    model = small_model(dropout=0.3)
    src, src_lens, tgt_in = batch()
    assert not torch.allclose(
        model(src, src_lens, tgt_in).logits, model(src, src_lens, tgt_in).logits
    )
    model.eval()
    assert torch.equal(model(src, src_lens, tgt_in).logits, model(src, src_lens, tgt_in).logits)


def test_runs_on_the_default_device() -> None:
    device = get_device()
    model = small_model().to(device)
    src, src_lens, tgt_in = (t.to(device) for t in batch())
    out = model(src, src_lens, tgt_in)
    assert out.logits.device.type == device.type
    expected = model.cpu()(*batch()).logits
    torch.testing.assert_close(out.logits.cpu(), expected)


src_ok, lens_ok, tgt_ok = batch()
ERRORS: list[tuple[Callable[[], object], type[Exception], str]] = [
    (
        lambda: small_model()(src_ok.clamp(max=10) - 1, lens_ok, tgt_ok),
        ValueError,
        "src must hold token ids in [0, vocab_size) = [0, 11); got values from -1 to 8",
    ),
    (
        lambda: small_model()(src_ok, lens_ok, tgt_ok + 1),
        ValueError,
        "tgt_in must hold token ids in [0, vocab_size) = [0, 13); got values from 1 to 13",
    ),
    (
        lambda: small_model()(src_ok.float(), lens_ok, tgt_ok),
        TypeError,
        "src must be an integer tensor of token ids; got dtype torch.float32",
    ),
    (
        lambda: small_model()(src_ok, torch.tensor([5, 3, 0]), tgt_ok),
        ValueError,
        "src_lens must lie in [1, 5]; got values from 0 to 5",
    ),
    (
        lambda: small_model()(src_ok, torch.tensor([6, 3, 2]), tgt_ok),
        ValueError,
        "src_lens must lie in [1, 5]; got values from 2 to 6",
    ),
    (
        lambda: small_model()(src_ok, lens_ok[:2], tgt_ok),
        ValueError,
        "src_lens must have shape (N,) = (3,); got (2,)",
    ),
    (
        lambda: small_model()(src_ok, lens_ok, tgt_ok[:2]),
        ValueError,
        "tgt_in must have the batch size of src, (N, T) = (3, T); got shape (2, 4)",
    ),
    (
        lambda: small_model(max_len=4)(src_ok, lens_ok, tgt_ok),
        ValueError,
        "src must have at most max_len = 4 positions (N, S); got 5",
    ),
    (
        lambda: small_model(max_len=5)(src_ok, lens_ok, torch.ones(3, 6, dtype=torch.long)),
        ValueError,
        "tgt_in must have at most max_len = 5 positions (N, T); got 6",
    ),
    (
        lambda: small_model().decode(tgt_ok[:1], torch.randn(3, 5, 8), lens_ok),
        ValueError,
        "tgt_in must have shape (N, T) = (3, T); got shape (1, 4)",
    ),
    (
        lambda: small_model().decode(tgt_ok, torch.randn(5, 8), lens_ok),
        ValueError,
        "memory must have at least 3 dims (N, S, 8); got shape (5, 8)",
    ),
    (
        lambda: small_model().decode(tgt_ok, torch.randn(3, 4, 8), lens_ok),
        ValueError,
        "src_lens must lie in [1, 4]; got values from 2 to 5",
    ),
    (
        lambda: Transformer(SRC_V, TGT_V, embed_dim=30, num_heads=4),
        ValueError,
        "embed_dim must be divisible by num_heads = 4; got embed_dim = 30",
    ),
    (
        lambda: Transformer(0, TGT_V),
        ValueError,
        "src_vocab_size must be at least 1; got 0",
    ),
    (
        lambda: Transformer(SRC_V, TGT_V, num_decoder_layers=0),
        ValueError,
        "num_decoder_layers must be at least 1; got 0",
    ),
    (
        lambda: Transformer(SRC_V, TGT_V, ffn_dim=0),
        ValueError,
        "ffn_dim must be at least 1; got 0",
    ),
    (
        lambda: Transformer(SRC_V, TGT_V, dropout=-0.1),
        ValueError,
        "dropout must lie in [0, 1); got -0.1",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), ERRORS)
def test_bad_input_is_named(
    call: Callable[[], object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call()


@pytest.fixture(scope="module")
def trained() -> tuple[Transformer, TranslationData, list[float]]:
    """The default Transformer trained with train_seq2seq's defaults on the chapter's task."""
    data = translation_data(seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)  # the initial weights
        model = Transformer(len(data.src_vocab), len(data.tgt_vocab))
    losses = train_seq2seq(model, data)
    return model, held_out(translation_data(300, seed=1), data), losses


def test_reaches_the_bahdanau_bar_on_held_out_pairs(
    trained: tuple[Transformer, TranslationData, list[float]],
) -> None:
    model, test, losses = trained
    assert len(test.src) >= 200
    assert losses[-1] < 0.1 * losses[0]
    assert token_accuracy(model, test) >= 0.9
    # the last decoder layer's cross-attention, averaged over heads, finds the gold word
    assert attention_agreement(model, test) >= 0.8


def test_greedy_translation_weights_are_the_last_layers_cross_attention(
    trained: tuple[Transformer, TranslationData, list[float]],
) -> None:
    model, test, _ = trained
    src, src_lens = test.src[:20], test.src_lens[:20]
    ids, weights = greedy_translate(model, src, src_lens)
    assert weights is not None
    tgt_in = torch.cat([torch.ones(20, 1, dtype=torch.long), ids], dim=1)  # bos, then the output
    with torch.no_grad():
        out = model.eval()(src, src_lens, tgt_in[:, :-1])
    expected = out.cross_weights[-1].mean(dim=1)  # (N, H, T, S) -> (N, T, S)
    finished = torch.cumsum(ids == 2, dim=1) - (ids == 2).long()  # 1 after eos
    expected = torch.where(finished[..., None] > 0, 0.0, expected)
    torch.testing.assert_close(weights, expected)
    assert torch.equal(out.logits.argmax(-1)[finished == 0], ids[finished == 0])
