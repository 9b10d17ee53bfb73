"""Cross-modal building blocks: patches, the CLIP loss, the towers and text-to-patch attention."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attention_book.variants import (
    ImageTower,
    PatchEmbedding,
    TextToPatchModel,
    TextTower,
    clip_logits,
    clip_loss,
    patchify,
)

# --- patchify and PatchEmbedding ---


def patches_by_loops(images: torch.Tensor, p: int) -> torch.Tensor:
    """Patches cut one by one, row-major, each flattened as (channel, row, column)."""
    n, _, h, w = images.shape
    rows = []
    for i in range(n):
        patches = [
            images[i, :, r * p : (r + 1) * p, c * p : (c + 1) * p].flatten()
            for r in range(h // p)
            for c in range(w // p)
        ]
        rows.append(torch.stack(patches))
    return torch.stack(rows)


@pytest.mark.parametrize(
    ("n", "c", "h", "w", "p"), [(2, 3, 6, 9, 3), (1, 1, 5, 5, 1), (3, 2, 10, 5, 5)]
)
def test_patchify_matches_loops_and_unfold(n: int, c: int, h: int, w: int, p: int) -> None:
    images = torch.randn(n, c, h, w)
    patches = patchify(images, p)
    assert patches.shape == (n, (h // p) * (w // p), c * p * p)
    torch.testing.assert_close(patches, patches_by_loops(images, p), rtol=0, atol=0)
    # F.unfold: (N, C p p, P) with the same (channel, row, column) order and row-major patches
    unfolded = F.unfold(images, kernel_size=p, stride=p).transpose(1, 2)
    torch.testing.assert_close(patches, unfolded, rtol=0, atol=0)


def test_patchify_does_not_mutate() -> None:
    images = torch.randn(2, 3, 4, 4)
    before = images.clone()
    patchify(images, 2)
    assert torch.equal(images, before)


def test_patchify_errors() -> None:
    with pytest.raises(ValueError, match=r"divisible by patch_size = 4; got \(H, W\) = \(6, 8\)"):
        patchify(torch.zeros(1, 3, 6, 8), 4)
    with pytest.raises(
        ValueError, match=r"images must have 4 dims \(N, C, H, W\); got shape \(3, 8, 8\)"
    ):
        patchify(torch.zeros(3, 8, 8), 4)
    with pytest.raises(TypeError, match=r"images must be a floating-point tensor"):
        patchify(torch.zeros(1, 3, 8, 8, dtype=torch.long), 4)
    with pytest.raises(ValueError, match=r"patch_size must be at least 1; got 0"):
        patchify(torch.zeros(1, 3, 8, 8), 0)


@pytest.mark.parametrize(
    ("c", "h", "w", "p", "e"), [(3, 32, 24, 8, 16), (1, 5, 7, 1, 3), (2, 13, 13, 13, 5)]
)
def test_patch_embedding_equals_strided_conv(c: int, h: int, w: int, p: int, e: int) -> None:
    embed = PatchEmbedding(p, c, e).double()
    conv = nn.Conv2d(c, e, kernel_size=p, stride=p).double()
    with torch.no_grad():
        conv.weight.copy_(embed.proj.weight.view(e, c, p, p))
        assert conv.bias is not None
        conv.bias.copy_(embed.proj.bias)
    images = torch.rand(2, c, h, w, dtype=torch.float64)
    expected = conv(images).flatten(2).transpose(1, 2)  # (N, E, H/p, W/p) -> (N, P, E)
    torch.testing.assert_close(embed(images), expected)


def test_patch_embedding_is_row_major() -> None:
    # one bright pixel in patch row 1, column 2 of a 3 x 4 grid of 2 x 2 patches -> patch 6
    embed = PatchEmbedding(2, 1, 4)
    images = torch.zeros(1, 1, 6, 8)
    images[0, 0, 2, 5] = 1.0
    out = embed(images)
    changed = (out - embed.proj.bias).abs().sum(dim=-1)[0]  # (P,)
    assert changed.nonzero().flatten().tolist() == [6]


def test_patch_embedding_gradcheck() -> None:
    embed = PatchEmbedding(2, 2, 3).double()
    images = torch.rand(1, 2, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(embed, (images,))


def test_patch_embedding_errors() -> None:
    embed = PatchEmbedding(8, 3, 16)
    with pytest.raises(
        ValueError, match=r"C = in_channels = 3 channels; got shape \(2, 1, 32, 32\)"
    ):
        embed(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"divisible by patch_size = 8; got \(H, W\) = \(30, 32\)"):
        embed(torch.zeros(2, 3, 30, 32))
    with pytest.raises(ValueError, match=r"embed_dim must be at least 1; got 0"):
        PatchEmbedding(8, 3, 0)
    with pytest.raises(TypeError, match=r"patch_size must be an int; got float"):
        PatchEmbedding(8.0, 3, 4)  # type: ignore[arg-type]


# --- clip_logits and clip_loss ---


def clip_loss_float64(image: torch.Tensor, text: torch.Tensor, t: float) -> torch.Tensor:
    """CLIP's loss written out in float64 with explicit log-sum-exps (no cross_entropy)."""
    x = image.double() / image.double().norm(dim=1, keepdim=True)
    y = text.double() / text.double().norm(dim=1, keepdim=True)
    logits = min(math.exp(t), 100.0) * x @ y.T
    diagonal = logits.diagonal()
    rows = (logits.logsumexp(dim=1) - diagonal).mean()  # image -> text
    columns = (logits.logsumexp(dim=0) - diagonal).mean()  # text -> image
    loss: torch.Tensor = (rows + columns) / 2
    return loss


@pytest.mark.parametrize(("n", "d"), [(1, 3), (5, 7), (13, 2)])
@pytest.mark.parametrize("t", [0.0, math.log(1 / 0.07), 7.0])
def test_clip_loss_matches_float64_formula(n: int, d: int, t: float) -> None:
    image, text = torch.randn(n, d), torch.randn(n, d)
    loss = clip_loss(image, text, torch.tensor(t))
    expected = clip_loss_float64(image, text, t).float()
    torch.testing.assert_close(loss, expected)


def test_clip_logits_formula_cap_and_rectangular_shapes() -> None:
    image, text = torch.randn(5, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    cosines = F.cosine_similarity(image[:, None, :], text[None, :, :], dim=-1)  # (5, 7)
    t = torch.tensor(1.5, dtype=torch.float64)
    torch.testing.assert_close(clip_logits(image, text, t), math.exp(1.5) * cosines)
    big = torch.tensor(9.0, dtype=torch.float64)
    torch.testing.assert_close(clip_logits(image, text, big), 100.0 * cosines)
    torch.testing.assert_close(
        clip_logits(image, text, big, max_scale=None), math.exp(9.0) * cosines
    )
    torch.testing.assert_close(clip_logits(image, text, big, max_scale=20.0), 20.0 * cosines)


def test_clip_loss_is_symmetric_and_scale_free_in_the_features() -> None:
    image, text, t = torch.randn(6, 4), torch.randn(6, 4), torch.tensor(2.0)
    loss = clip_loss(image, text, t)
    torch.testing.assert_close(clip_loss(text, image, t), loss)
    torch.testing.assert_close(clip_loss(3.0 * image, 0.5 * text, t), loss)


def test_perfect_alignment_with_a_large_scale_costs_nothing() -> None:
    features = torch.eye(8, 16)  # eight orthogonal pairs
    assert clip_loss(features, features, torch.tensor(math.log(100))) < 1e-30
    # identical features everywhere: every row is a uniform guess whatever the scale
    same = torch.ones(8, 16)
    torch.testing.assert_close(clip_loss(same, same, torch.tensor(3.0)), torch.tensor(math.log(8)))


def test_gradients_reach_the_scale_and_the_cap_stops_them() -> None:
    # four aligned pairs, all close together (cosine 0.99 between pairs): hard to tell apart
    text = torch.cat([torch.ones(4, 1), 0.1 * torch.eye(4)], dim=1)
    image = text.clone()
    below = torch.tensor(math.log(50.0), requires_grad=True)
    torch.autograd.backward(clip_loss(image, text, below))
    assert below.grad is not None
    assert below.grad < 0  # aligned pairs: a larger scale lowers the loss
    above = torch.tensor(math.log(200.0), requires_grad=True)
    torch.autograd.backward(clip_loss(image, text, above))
    assert above.grad is not None
    assert above.grad == 0.0  # capped: no gradient past log 100
    uncapped = torch.tensor(math.log(200.0), requires_grad=True)
    torch.autograd.backward(clip_loss(image, text, uncapped, max_scale=None))
    assert uncapped.grad is not None
    assert uncapped.grad < 0  # the missing cap: it keeps climbing


def test_clip_loss_gradcheck() -> None:
    image = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    text = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(clip_loss, (image, text, t))


def test_clip_loss_does_not_mutate() -> None:
    image, text, t = torch.randn(3, 2), torch.randn(3, 2), torch.tensor(2.0)
    copies = image.clone(), text.clone(), t.clone()
    clip_loss(image, text, t)
    assert all(torch.equal(a, b) for a, b in zip((image, text, t), copies, strict=True))


def test_clip_errors() -> None:
    t = torch.tensor(1.0)
    with pytest.raises(
        ValueError, match=r"shape of image_features \(N, D\) = \(4, 3\); got \(5, 3\)"
    ):
        clip_loss(torch.randn(4, 3), torch.randn(5, 3), t)
    with pytest.raises(ValueError, match=r"text_features must have D = 3 features"):
        clip_logits(torch.randn(4, 3), torch.randn(4, 2), t)
    with pytest.raises(ValueError, match=r"logit_scale must be a 0-dim tensor; got shape \(1,\)"):
        clip_loss(torch.randn(4, 3), torch.randn(4, 3), torch.ones(1))
    with pytest.raises(ValueError, match=r"image_features must have 2 dims \(N, D\)"):
        clip_loss(torch.randn(2, 4, 3), torch.randn(2, 4, 3), t)
    with pytest.raises(TypeError, match=r"text_features must have the dtype of image_features"):
        clip_logits(torch.randn(4, 3), torch.randn(4, 3, dtype=torch.float64), t)
    with pytest.raises(TypeError, match=r"logit_scale must be a floating-point tensor"):
        clip_loss(torch.randn(4, 3), torch.randn(4, 3), torch.tensor(1))
    with pytest.raises(TypeError, match=r"logit_scale must be a torch.Tensor; got float"):
        clip_loss(torch.randn(4, 3), torch.randn(4, 3), 2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"at least one row \(N >= 1\); got \(0, 3\)"):
        clip_loss(torch.zeros(0, 3), torch.zeros(0, 3), t)
    with pytest.raises(ValueError, match=r"max_scale must be positive; got 0.0"):
        clip_loss(torch.randn(4, 3), torch.randn(4, 3), t, max_scale=0.0)


# --- the towers and the text-to-patch model ---


def test_text_tower_is_a_mean_over_the_caption_then_an_mlp() -> None:
    tower = TextTower(vocab_size=9, embed_dim=4)
    captions = torch.tensor([[3, 4, 2, 0], [5, 2, 7, 8]])
    lens = torch.tensor([3, 2])
    out = tower(captions, lens)
    expected = torch.stack(
        [tower.embedding.weight[[3, 4, 2]].mean(dim=0), tower.embedding.weight[[5, 2]].mean(dim=0)]
    )
    torch.testing.assert_close(out, tower.mlp(expected))
    # tokens past the length are ignored
    torch.testing.assert_close(tower(torch.tensor([[3, 4, 2, 6], [5, 2, 1, 1]]), lens), out)


def test_image_tower_pools_its_patch_features() -> None:
    tower = ImageTower(image_size=12, patch_size=4, embed_dim=5)
    images = torch.rand(3, 3, 12, 12)
    patches = tower.patch_features(images)
    assert patches.shape == (3, 9, 5)
    expected = tower.mlp(tower.patches(images) + tower.position)
    torch.testing.assert_close(patches, expected)
    torch.testing.assert_close(tower(images), patches.mean(dim=1))


def test_text_to_patch_model_is_one_cross_attention() -> None:
    model = TextToPatchModel(vocab_size=15, image_size=20, patch_size=5, embed_dim=6)
    images, captions, lens = (
        torch.rand(4, 3, 20, 20),
        torch.randint(3, 15, (4, 5)),
        torch.full((4,), 5),
    )
    out = model(images, captions, lens)
    query = model.text(captions, lens)  # (N, E): the caption is the query
    keys = model.image.patch_features(images)  # (N, P, E): patches are keys and values
    weights = torch.softmax(torch.einsum("ne,npe->np", query, keys) / math.sqrt(6), dim=-1)
    torch.testing.assert_close(out.weights, weights)
    pooled = torch.einsum("np,npe->ne", weights, keys)
    torch.testing.assert_close(out.logits, model.classifier(pooled))
    assert out.weights.shape == (4, 16)


def test_tower_and_model_errors() -> None:
    with pytest.raises(ValueError, match=r"image_size must be divisible by patch_size = 5; got 32"):
        ImageTower(32, 5, 8)
    tower = ImageTower(32, 8, 8)
    with pytest.raises(ValueError, match=r"images must be \(N, C, 32, 32\); got \(2, 3, 16, 16\)"):
        tower(torch.rand(2, 3, 16, 16))
    text = TextTower(5, 4)
    with pytest.raises(
        ValueError, match=r"captions must hold token ids in \[0, vocab_size\) = \[0, 5\)"
    ):
        text(torch.tensor([[1, 7]]), torch.tensor([2]))
    with pytest.raises(ValueError, match=r"caption_lens must lie in \[1, 2\]"):
        text(torch.tensor([[1, 3]]), torch.tensor([3]))
    model = TextToPatchModel(5, 16, 8)
    with pytest.raises(ValueError, match=r"captions must have N = 3 rows like images; got 2"):
        model(torch.rand(3, 3, 16, 16), torch.ones(2, 3, dtype=torch.long), torch.full((2,), 3))
    with pytest.raises(ValueError, match=r"num_classes must be at least 2; got 1"):
        TextToPatchModel(5, 16, 8, num_classes=1)


FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "PatchEmbedding": lambda: PatchEmbedding(4, 3, 5),
    "TextTower": lambda: TextTower(7, 4),
    "ImageTower": lambda: ImageTower(8, 4, 5),
    "TextToPatchModel": lambda: TextToPatchModel(7, 8, 4, embed_dim=4),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_modules_move_every_tensor(name: str) -> None:
    module = FACTORIES[name]().to("meta")
    left = [
        n
        for n, t in [*module.named_parameters(), *module.named_buffers()]
        if t.device.type != "meta"
    ]
    assert left == []
    assert all(not isinstance(v, torch.Tensor) for m in module.modules() for v in vars(m).values())
    doubled = FACTORIES[name]().to(torch.float64)
    assert {p.dtype for p in doubled.parameters()} == {torch.float64}
