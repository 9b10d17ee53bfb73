"""Gumbel-softmax attention, sampled hard attention and REINFORCE with a baseline."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from attention_book.variants import (
    gumbel_noise,
    gumbel_softmax_attention,
    reinforce_loss,
    sample_attention,
)

DTYPES = [torch.float32, torch.float64]
# chi-square with 4 degrees of freedom: P(X > 18.47) = 0.001
CHI2_4_999 = 18.47


def seeded(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference_noise(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 7) -> Tensor:
    """The documented recipe, written out: clamp torch.rand, then -log(-log(u))."""
    u = torch.rand(shape, generator=seeded(seed), dtype=dtype)
    info = torch.finfo(dtype)
    u = u.clamp(info.tiny, 1 - info.eps)
    return -torch.log(-torch.log(u))


def chi_square(index: Tensor, probs: Tensor) -> float:
    counts = torch.bincount(index, minlength=probs.numel()).double()
    expected = probs.double() * index.numel()
    return float(((counts - expected) ** 2 / expected).sum())


# --- gumbel_noise ---


def test_gumbel_noise_follows_the_recipe_and_the_distribution() -> None:
    for dtype in DTYPES:
        noise = gumbel_noise((3, 5), dtype=dtype, generator=seeded())
        assert noise.dtype == dtype
        torch.testing.assert_close(noise, reference_noise((3, 5), dtype))
    noise = gumbel_noise((50_000,), dtype=torch.float64, generator=seeded())
    assert noise.isfinite().all()
    # standard Gumbel: mean = Euler's gamma, variance = pi^2 / 6 (5 standard errors)
    assert abs(noise.mean().item() - 0.5772156649) < 0.03
    assert abs(noise.var().item() - math.pi**2 / 6) < 0.07


def test_gumbel_noise_is_finite_at_the_ends_of_the_uniform() -> None:
    for dtype in DTYPES:
        info = torch.finfo(dtype)
        u = torch.tensor([0.0, info.tiny, 1 - info.eps, 1.0], dtype=dtype)
        u = u.clamp(info.tiny, 1 - info.eps)  # what gumbel_noise does to torch.rand's draws
        assert (-torch.log(-torch.log(u))).isfinite().all()


# --- gumbel_softmax_attention ---


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("num_queries", "num_keys"), [(1, 1), (5, 7), (7, 13)])
def test_gumbel_softmax_is_the_softmax_of_noisy_scores(
    dtype: torch.dtype, num_queries: int, num_keys: int
) -> None:
    scores = torch.randn(2, num_queries, num_keys, dtype=dtype)
    value = torch.randn(2, num_keys, 3, dtype=dtype)
    noise = reference_noise(scores.shape, dtype)
    for tau in (0.5, 1.0, 3.0):
        output, weights = gumbel_softmax_attention(scores, value, tau=tau, generator=seeded())
        expected = torch.softmax((scores + noise) / tau, dim=-1)
        torch.testing.assert_close(weights, expected)
        torch.testing.assert_close(output, expected @ value)


def test_hard_weights_are_exactly_one_hot_at_the_noisy_argmax() -> None:
    scores, value = torch.randn(3, 5, 13), torch.randn(3, 13, 4)
    noise = reference_noise(scores.shape, torch.float32)
    expected_index = (scores + noise).argmax(dim=-1)
    for tau in (1e-3, 0.5, 1.0, 10.0):  # the same noise whatever tau
        output, weights = gumbel_softmax_attention(
            scores, value, tau=tau, hard=True, generator=seeded()
        )
        assert weights is not None
        assert ((weights == 0) | (weights == 1)).all()
        assert weights.sum(dim=-1).eq(1).all()
        assert torch.equal(weights.argmax(dim=-1), expected_index)
        torch.testing.assert_close(
            output, value.gather(1, expected_index[..., None].expand(-1, -1, 4))
        )


def test_hard_gradient_is_the_soft_samples_gradient() -> None:
    scores = torch.randn(2, 5, 7, dtype=torch.float64)
    value = torch.randn(2, 7, 3, dtype=torch.float64)
    upstream = torch.randn(2, 5, 3, dtype=torch.float64)
    grads = []
    for hard in (False, True):
        leaf = scores.clone().requires_grad_(True)
        output = gumbel_softmax_attention(
            leaf, value, tau=0.7, hard=hard, generator=seeded()
        ).output
        (grad,) = torch.autograd.grad((output * upstream).sum(), leaf)
        grads.append(grad)
    torch.testing.assert_close(grads[1], grads[0])
    assert grads[1].abs().sum() > 0
    # and the soft sample's gradient is the plain softmax Jacobian of the noisy scores
    noise = reference_noise(scores.shape, torch.float64)
    leaf = scores.clone().requires_grad_(True)
    soft = torch.softmax((leaf + noise) / 0.7, dim=-1)
    (expected,) = torch.autograd.grad(((soft @ value) * upstream).sum(), leaf)
    torch.testing.assert_close(grads[0], expected)


@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_masks_and_empty_rows(hard: bool) -> None:
    scores = torch.randn(4, 5, 7, dtype=torch.float64) * 5
    value = torch.randn(4, 7, 3, dtype=torch.float64)
    mask = torch.rand(4, 5, 7) < 0.4
    mask[:, 0] = False
    for seed in range(20):
        leaf = scores.clone().requires_grad_(True)
        output, weights = gumbel_softmax_attention(
            leaf, value, hard=hard, attn_mask=mask, generator=seeded(seed)
        )
        assert weights is not None
        assert weights[~mask].eq(0).all()
        assert weights[:, 0].eq(0).all()
        assert output[:, 0].eq(0).all()
        sums = weights.sum(dim=-1)
        has_key = mask.any(dim=-1)
        torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]))
        output.sum().backward()  # type: ignore[no-untyped-call]
        assert leaf.grad is not None
        assert leaf.grad.isfinite().all()
        assert leaf.grad[~mask].eq(0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_is_finite_at_small_tau_and_large_scores(dtype: torch.dtype, hard: bool) -> None:
    scores = (torch.randint(0, 2, (3, 5, 13)) * 2 - 1).to(dtype) * 1e4  # +-1e4, with ties
    scores[0, 0, :] = 1e4  # all tied
    scores.requires_grad_(True)
    value = torch.randn(3, 13, 4, dtype=dtype)
    mask = torch.rand(3, 5, 13) < 0.5
    mask[1, 1] = False
    for tau in (1e-3, 1.0):
        for attn_mask in (None, mask):
            output, weights = gumbel_softmax_attention(
                scores, value, tau=tau, hard=hard, attn_mask=attn_mask, generator=seeded()
            )
            assert weights is not None
            assert weights.isfinite().all()
            assert output.isfinite().all()
            (grad,) = torch.autograd.grad((output * torch.randn_like(output)).sum(), scores)
            assert grad.isfinite().all()


def test_gumbel_hard_samples_follow_the_softmax() -> None:
    logits = torch.tensor([1.0, 0.0, -0.5, 2.0, 0.3])
    scores = logits.expand(20_000, 1, 5)
    _, weights = gumbel_softmax_attention(scores, torch.eye(5), hard=True, generator=seeded())
    assert weights is not None
    assert chi_square(weights[:, 0].argmax(dim=-1), torch.softmax(logits, 0)) < CHI2_4_999


def test_gumbel_uses_the_global_generator_by_default() -> None:
    scores, value = torch.randn(2, 5, 7), torch.randn(2, 7, 3)
    torch.manual_seed(3)
    first = gumbel_softmax_attention(scores, value).weights
    torch.manual_seed(3)
    again = gumbel_softmax_attention(scores, value).weights
    other = gumbel_softmax_attention(scores, value).weights
    assert first is not None
    assert again is not None
    assert other is not None
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_gumbel_broadcasts_value_and_leaves_inputs_alone() -> None:
    scores, value = torch.randn(2, 1, 5, 7), torch.randn(3, 7, 4)
    copies = scores.clone(), value.clone()
    output, weights = gumbel_softmax_attention(scores, value, hard=True, generator=seeded())
    assert output.shape == (2, 3, 5, 4)
    assert weights is not None
    assert weights.shape == (2, 1, 5, 7)
    torch.testing.assert_close(output, weights @ value)
    assert torch.equal(scores, copies[0])
    assert torch.equal(value, copies[1])


def test_gumbel_errors() -> None:
    scores, value = torch.randn(2, 5, 7), torch.randn(2, 7, 3)
    with pytest.raises(ValueError, match=r"tau must be positive; got 0"):
        gumbel_softmax_attention(scores, value, tau=0)
    with pytest.raises(ValueError, match=r"tau must be positive; got -0.5"):
        gumbel_softmax_attention(scores, value, tau=-0.5)
    with pytest.raises(TypeError, match=r"tau must be a number; got str"):
        gumbel_softmax_attention(scores, value, tau="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"value must have S = 7 rows like scores"):
        gumbel_softmax_attention(scores, value[:, :6])
    with pytest.raises(ValueError, match=r"scores must have at least 2 dims \(\.\.\., L, S\)"):
        gumbel_softmax_attention(torch.randn(7), value)
    with pytest.raises(TypeError, match=r"value must have the dtype of scores"):
        gumbel_softmax_attention(scores, value.double())
    with pytest.raises(ValueError, match=r"scores and value must have batch dims"):
        gumbel_softmax_attention(scores, torch.randn(3, 7, 3))
    with pytest.raises(ValueError, match=r"attn_mask must broadcast to \(N, L, S\) = \(2, 5, 7\)"):
        gumbel_softmax_attention(scores, value, attn_mask=torch.ones(5, 5, dtype=torch.bool))


# --- sample_attention ---


@pytest.mark.parametrize("dtype", DTYPES)
def test_sample_returns_the_value_and_log_prob_of_the_drawn_key(dtype: torch.dtype) -> None:
    scores = torch.randn(2, 5, 7, dtype=dtype, requires_grad=True)
    value = torch.randn(2, 7, 3, dtype=dtype)
    output, index, log_prob = sample_attention(scores, value, generator=seeded())
    assert index.dtype == torch.int64
    assert index.shape == (2, 5)
    assert log_prob.shape == (2, 5)
    expected_index = (scores.detach() + reference_noise(scores.shape, dtype)).argmax(dim=-1)
    assert torch.equal(index, expected_index)
    torch.testing.assert_close(output, value[torch.arange(2)[:, None], index])
    log_softmax = torch.log_softmax(scores.detach(), dim=-1)
    torch.testing.assert_close(log_prob.detach(), log_softmax.gather(-1, index[..., None])[..., 0])
    # the same key as the hard Gumbel sample drawn from the same generator state
    hard = gumbel_softmax_attention(scores, value, hard=True, generator=seeded()).weights
    assert hard is not None
    assert torch.equal(hard.argmax(dim=-1), index)
    # d log pi(j) / d s = onehot(j) - softmax(s); the output carries no gradient to the scores
    (grad,) = torch.autograd.grad(log_prob.sum(), scores)
    onehot = torch.nn.functional.one_hot(index, 7).to(dtype)
    torch.testing.assert_close(grad, onehot - torch.softmax(scores.detach(), dim=-1))
    assert not output.requires_grad


def test_sample_frequencies_follow_the_softmax() -> None:
    logits = torch.tensor([0.5, -1.0, 0.0, 1.5, 0.2], dtype=torch.float64)
    sample = sample_attention(
        logits.expand(20_000, 1, 5), torch.eye(5, dtype=torch.float64), generator=seeded(1)
    )
    assert chi_square(sample.index[:, 0], torch.softmax(logits, 0)) < CHI2_4_999
    # a wrong distribution is rejected by the same test
    assert chi_square(sample.index[:, 0], torch.full((5,), 0.2)) > CHI2_4_999


def test_sample_with_masks() -> None:
    scores = torch.randn(4, 5, 7, dtype=torch.float64, requires_grad=True)
    value = torch.randn(7, 3, dtype=torch.float64)
    mask = torch.rand(4, 1, 7) < 0.5
    mask[0] = False
    mask[1, 0, 3] = True
    allowed = mask.expand(4, 5, 7)
    for seed in range(20):
        output, index, log_prob = sample_attention(
            scores, value, attn_mask=mask, generator=seeded(seed)
        )
        assert index[0].eq(-1).all()
        assert output[0].eq(0).all()
        assert log_prob[0].eq(0).all()
        drawn = allowed[1:].gather(-1, index[1:, :, None])
        assert drawn.all()
        (grad,) = torch.autograd.grad(log_prob.sum(), scores)
        assert grad.isfinite().all()
        assert grad[~allowed].eq(0).all()
        masked_log_softmax = torch.log_softmax(scores.detach().masked_fill(~allowed, -math.inf), -1)
        expected = masked_log_softmax[1:].gather(-1, index[1:, :, None])[..., 0]
        torch.testing.assert_close(log_prob[1:].detach(), expected)


def test_sample_large_scores_and_errors() -> None:
    scores = torch.tensor([[1e4, -1e4, 1e4 - 1]], requires_grad=True)
    sample = sample_attention(scores, torch.eye(3), generator=seeded())
    assert sample.log_prob.isfinite().all()
    (grad,) = torch.autograd.grad(sample.log_prob.sum(), scores)
    assert grad.isfinite().all()
    with pytest.raises(ValueError, match=r"value must have S = 3 rows like scores"):
        sample_attention(scores, torch.eye(4))
    with pytest.raises(TypeError, match=r"scores must be a floating-point tensor"):
        sample_attention(torch.ones(1, 3, dtype=torch.int64), torch.eye(3))


# --- reinforce_loss ---


def test_reinforce_gradient_is_williams_estimate() -> None:
    logits = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    sample = sample_attention(
        logits[:, None], torch.eye(5, dtype=torch.float64), generator=seeded()
    )
    action = sample.index[:, 0]
    log_prob = sample.log_prob[:, 0]
    reward = torch.randn(6, dtype=torch.float64, requires_grad=True)
    baseline = torch.zeros((), dtype=torch.float64).add(0.3).requires_grad_(True)
    loss = reinforce_loss(log_prob, reward, baseline)
    grad_logits, grad_reward, grad_baseline = torch.autograd.grad(
        loss, (logits, reward, baseline), allow_unused=True, materialize_grads=True
    )
    # -(1/M) sum_m (R_m - b) grad log pi(a_m), grad log pi(a) = onehot(a) - softmax
    score = torch.nn.functional.one_hot(action, 5) - torch.softmax(logits.detach(), -1)
    expected = -((reward.detach() - 0.3)[:, None] * score) / 6
    torch.testing.assert_close(grad_logits, expected)
    assert grad_reward.eq(0).all()
    # the baseline learns only from the regression term: d/db mean((R - b)^2) = -2 mean(R - b)
    torch.testing.assert_close(grad_baseline, -2 * (reward.detach() - 0.3).mean())
    # value: policy term + regression term
    expected_loss = -((reward - 0.3) * log_prob).mean() + ((reward - 0.3) ** 2).mean()
    torch.testing.assert_close(loss, expected_loss)


def test_reinforce_trains_the_baseline_toward_the_mean_reward_and_the_policy() -> None:
    # a bandit with 3 arms: the second pays most
    logits = torch.zeros(1, 3, requires_grad=True)
    baseline = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.SGD([logits, baseline], lr=0.2)
    generator, payoff = seeded(), torch.tensor([0.2, 1.0, 0.0])
    for _ in range(100):
        sample = sample_attention(logits.expand(64, 1, 3), torch.eye(3), generator=generator)
        reward = payoff[sample.index[:, 0]]
        loss = reinforce_loss(sample.log_prob[:, 0], reward, baseline)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    probs = torch.softmax(logits.detach(), -1)[0]
    assert probs[1] > 0.9
    # the baseline tracks the expected reward of the current policy
    assert abs(baseline.item() - (probs @ payoff).item()) < 0.1
    # with the policy fixed, the baseline alone converges to E[R]
    baseline = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.SGD([baseline], lr=0.05)
    rewards = torch.rand(200, 64, generator=seeded(2)) < 0.7  # Bernoulli(0.7)
    for reward in rewards.float():
        loss = reinforce_loss(torch.zeros(64), reward, baseline)
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    assert abs(baseline.item() - 0.7) < 0.05


def test_reinforce_errors() -> None:
    log_prob = torch.zeros(4, 3)
    with pytest.raises(
        ValueError, match=r"reward must broadcast to log_prob's shape = \(4, 3\); got \(4,\)"
    ):
        reinforce_loss(log_prob, torch.zeros(4), torch.zeros(()))
    with pytest.raises(
        ValueError, match=r"baseline must broadcast to log_prob's shape = \(4, 3\); got \(2, 3\)"
    ):
        reinforce_loss(log_prob, torch.zeros(4, 1), torch.zeros(2, 3))
    with pytest.raises(
        TypeError, match=r"reward must be a floating-point tensor; got dtype torch.bool"
    ):
        reinforce_loss(log_prob, torch.ones(4, 3, dtype=torch.bool), torch.zeros(()))
    with pytest.raises(TypeError, match=r"baseline must be a torch.Tensor; got float"):
        reinforce_loss(log_prob, torch.zeros(4, 3), 0.5)  # type: ignore[arg-type]
