"""The pick-one task: data, model, losses and the three ways to train the picker."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from attention_book.variants import (
    PickOneData,
    PickOneModel,
    pick_one_data,
    pick_one_loss,
    reinforce_loss,
    train_pick_one,
)

METHODS = ["soft", "gumbel", "reinforce"]


@pytest.fixture(scope="module")
def data() -> PickOneData:
    return pick_one_data(800)


# --- pick_one_data ---


def test_data_shapes_and_answers() -> None:
    data = pick_one_data(13, num_items=5, dim=7, num_classes=3)
    assert data.items.shape == (13, 5, 7)
    assert data.items.dtype == torch.float32
    assert data.labels.shape == (13, 5)
    assert data.labels.dtype == torch.int64
    assert data.query.shape == (13, 7)
    assert data.target.shape == (13,)
    assert data.target.dtype == torch.int64
    assert data.labels.min() >= 0
    assert data.labels.max() < 3
    assert data.target.min() >= 0
    assert data.target.max() < 5
    assert torch.equal(data.answer, data.labels[torch.arange(13), data.target])


def test_query_is_a_rotated_copy_of_the_target() -> None:
    data = pick_one_data(50, num_items=6, dim=4, noise=0.0)
    target = data.items[torch.arange(50), data.target]  # (N, D)
    # one rotation for the whole set: solve query = target @ R^T by least squares
    rotation_t = torch.linalg.lstsq(target, data.query).solution  # (D, D)
    torch.testing.assert_close(target @ rotation_t, data.query, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rotation_t.T @ rotation_t, torch.eye(4), atol=1e-4, rtol=1e-4)
    noisy = pick_one_data(50, num_items=6, dim=4, noise=0.5)
    residual = noisy.query - target @ rotation_t
    assert 0.3 < residual.std().item() < 0.7


def test_data_is_deterministic_per_seed() -> None:
    first, again, other = pick_one_data(20), pick_one_data(20), pick_one_data(20, seed=1)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(first.items, other.items)


def test_data_errors() -> None:
    with pytest.raises(ValueError, match=r"num_samples must be at least 1; got 0"):
        pick_one_data(0)
    with pytest.raises(ValueError, match=r"num_items must be at least 2; got 1"):
        pick_one_data(5, num_items=1)
    with pytest.raises(ValueError, match=r"num_classes must be at least 2; got 1"):
        pick_one_data(5, num_classes=1)
    with pytest.raises(TypeError, match=r"dim must be an int; got float"):
        pick_one_data(5, dim=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"noise must be at least 0; got -0.1"):
        pick_one_data(5, noise=-0.1)


# --- PickOneModel ---


def test_model_scores_and_pooling(data: PickOneData) -> None:
    model = PickOneModel(16, 10, hidden_size=8).double()
    query, items, labels = data.query[:5].double(), data.items[:5].double(), data.labels[:5]
    q = query @ model.W_q.weight.T  # (5, 8)
    k = items @ model.W_k.weight.T  # (5, n, 8)
    expected_scores = torch.einsum("nh,nih->ni", q, k) / math.sqrt(8)
    scores = model.scores(query, items)
    torch.testing.assert_close(scores, expected_scores)
    values = model.embedding(labels)  # (5, n, 8)

    soft = model(query, items, labels, pooling="soft")
    torch.testing.assert_close(soft.weights, torch.softmax(expected_scores, -1))
    pooled = torch.einsum("ni,nih->nh", soft.weights, values)
    torch.testing.assert_close(soft.logits, model.classifier(pooled))
    assert soft.log_prob is None

    best = model(query, items, labels, pooling="argmax")
    assert torch.equal(best.weights, F.one_hot(scores.argmax(-1), 8).double())

    for pooling in ("gumbel", "sample"):
        out = model(
            query, items, labels, pooling=pooling, generator=torch.Generator().manual_seed(0)
        )
        assert out.logits.shape == (5, 10)
        assert ((out.weights == 0) | (out.weights == 1)).all()
        assert out.weights.sum(-1).eq(1).all()
        picked = out.weights.argmax(-1)
        torch.testing.assert_close(out.logits, model.classifier(values[torch.arange(5), picked]))
        assert (out.log_prob is not None) == (pooling == "sample")
    sample = model(
        query, items, labels, pooling="sample", generator=torch.Generator().manual_seed(0)
    )
    assert sample.log_prob is not None
    log_softmax = torch.log_softmax(expected_scores, -1)
    torch.testing.assert_close(
        sample.log_prob, log_softmax.gather(-1, sample.weights.argmax(-1, keepdim=True))[:, 0]
    )


def test_model_errors(data: PickOneData) -> None:
    model = PickOneModel(16, 10)
    with pytest.raises(
        ValueError, match=r"pooling must be one of 'soft', 'gumbel', 'sample', 'argmax'; got 'hard'"
    ):
        model(data.query, data.items, data.labels, pooling="hard")
    with pytest.raises(ValueError, match=r"hidden_size must be at least 1; got 0"):
        PickOneModel(16, 10, hidden_size=0)
    with pytest.raises(ValueError, match=r"num_classes must be at least 2; got 1"):
        PickOneModel(16, 1)


# --- pick_one_loss ---


def test_losses_of_the_three_methods(data: PickOneData) -> None:
    batch = PickOneData(*(field[:32] for field in data))
    model = PickOneModel(16, 10)
    soft = model(batch.query, batch.items, batch.labels, pooling="soft")
    torch.testing.assert_close(
        pick_one_loss(model, batch, "soft"), F.cross_entropy(soft.logits, batch.answer)
    )

    loss = pick_one_loss(model, batch, "reinforce", generator=torch.Generator().manual_seed(3))
    out = model(
        batch.query,
        batch.items,
        batch.labels,
        pooling="sample",
        generator=torch.Generator().manual_seed(3),
    )
    assert out.log_prob is not None
    cross_entropy = F.cross_entropy(out.logits, batch.answer, reduction="none")
    baseline = model.baseline(batch.query)[:, 0]
    expected = cross_entropy.mean() + reinforce_loss(out.log_prob, -cross_entropy, baseline)
    torch.testing.assert_close(loss, expected)
    # the scorer learns from the policy term only: the cross-entropy of a sampled item
    # sends it no gradient
    (grad_ce,) = torch.autograd.grad(
        cross_entropy.mean(), model.W_q.weight, allow_unused=True, materialize_grads=True
    )
    assert grad_ce.eq(0).all()
    (grad,) = torch.autograd.grad(loss, model.W_q.weight)
    assert grad.abs().sum() > 0

    gumbel = pick_one_loss(model, batch, "gumbel", generator=torch.Generator().manual_seed(3))
    (grad,) = torch.autograd.grad(gumbel, model.W_q.weight)
    assert grad.abs().sum() > 0
    with pytest.raises(
        ValueError, match=r"method must be one of 'reinforce', 'gumbel', 'soft'; got 'hard'"
    ):
        pick_one_loss(model, batch, "hard")  # type: ignore[arg-type]


# --- train_pick_one ---


@pytest.mark.parametrize(
    ("method", "minimum"), [("soft", 0.85), ("gumbel", 0.85), ("reinforce", 0.6)]
)
def test_each_method_learns_to_pick(data: PickOneData, method: str, minimum: float) -> None:
    result = train_pick_one(method, data, epochs=6, lr=0.02)  # type: ignore[arg-type]
    # chance: a random item has the right label with probability 1/8 + 7/8 * 1/10 = 0.21
    assert result.accuracy > minimum
    assert result.pick_accuracy > minimum - 0.05
    assert result.accuracy == result.accuracies[-1]
    assert len(result.accuracies) == 6
    assert len(result.losses) == 6
    assert result.losses[-1] < result.losses[0]
    assert math.isfinite(result.grad_variance)
    assert result.grad_variance > 0
    assert result.seconds > 0
    assert 0 <= result.soft_accuracy <= 1
    assert isinstance(result.model, PickOneModel)


def test_reinforce_gradients_are_noisier_than_soft_ones(data: PickOneData) -> None:
    soft = train_pick_one("soft", data, epochs=3)
    reinforce = train_pick_one("reinforce", data, epochs=3)
    assert reinforce.grad_variance > 3 * soft.grad_variance


def test_training_is_deterministic_and_leaves_the_global_rng_alone(data: PickOneData) -> None:
    for method in METHODS:
        state = torch.get_rng_state()
        first = train_pick_one(method, data, epochs=2, seed=3)  # type: ignore[arg-type]
        assert torch.equal(torch.get_rng_state(), state)
        again = train_pick_one(method, data, epochs=2, seed=3)  # type: ignore[arg-type]
        other = train_pick_one(method, data, epochs=2, seed=4)  # type: ignore[arg-type]
        assert first.losses == again.losses
        assert first.accuracies == again.accuracies
        assert first.grad_variance == again.grad_variance
        assert first.losses != other.losses
    # the three methods start from the same model
    models = [train_pick_one(m, data, epochs=1, lr=1e-12).model for m in METHODS]  # type: ignore[arg-type]
    for model in models[1:]:
        torch.testing.assert_close(model.W_q.weight, models[0].W_q.weight)


def test_training_errors(data: PickOneData) -> None:
    with pytest.raises(
        ValueError, match=r"method must be one of 'reinforce', 'gumbel', 'soft'; got 'hard'"
    ):
        train_pick_one("hard", data)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"data must be a PickOneData; got tuple"):
        train_pick_one("soft", tuple(data))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"epochs must be at least 1; got 0"):
        train_pick_one("soft", data, epochs=0)
    with pytest.raises(ValueError, match=r"lr must be positive; got 0"):
        train_pick_one("soft", data, lr=0)
    with pytest.raises(ValueError, match=r"tau must be positive; got -1"):
        train_pick_one("gumbel", data, tau=-1)
    with pytest.raises(
        ValueError,
        match=r"test_fraction must leave at least one training and one test example of N = 800; got 1.0",
    ):
        train_pick_one("soft", data, test_fraction=1.0)
    with pytest.raises(
        ValueError, match=r"test_fraction must leave .* got 0.0001 \(0 test examples\)"
    ):
        train_pick_one("soft", data, test_fraction=0.0001)
    with pytest.raises(TypeError, match=r"test_fraction must be a number; got str"):
        train_pick_one("soft", data, test_fraction="0.25")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"test_fraction must lie in \[0, 1\]; got nan"):
        train_pick_one("soft", data, test_fraction=float("nan"))
