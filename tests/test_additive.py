"""AdditiveAttention against the formula computed one query-key pair at a time."""

from __future__ import annotations

import torch
from torch import nn

from attention_book import AdditiveAttention


def test_matches_the_formula_pair_by_pair_with_l_different_from_s() -> None:
    module = AdditiveAttention(query_size=3, key_size=5, num_hiddens=4).double()
    query = torch.randn(2, 3, 3, dtype=torch.float64)  # (N, L, Eq)
    key = torch.randn(2, 6, 5, dtype=torch.float64)  # (N, S, Ek)
    value = torch.randn(2, 6, 2, dtype=torch.float64)  # (N, S, Ev)
    mask = torch.rand(2, 3, 6) < 0.7
    mask[0, 2] = False
    output, weights = module(query, key, value, mask)

    W_q, W_k, w_v = module.W_q.weight, module.W_k.weight, module.w_v.weight[0]
    expected_weights = torch.zeros(2, 3, 6, dtype=torch.float64)
    for n in range(2):
        for i in range(3):
            allowed = [j for j in range(6) if mask[n, i, j]]
            if not allowed:
                continue  # nothing to attend to: weights stay 0
            scores = torch.stack(
                [w_v @ torch.tanh(W_q @ query[n, i] + W_k @ key[n, j]) for j in allowed]
            )
            expected_weights[n, i, allowed] = torch.softmax(scores, dim=0)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(output, expected_weights @ value)
    assert torch.equal(output[0, 2], torch.zeros(2, dtype=torch.float64))


def test_submodules_are_bias_free_linears_named_after_the_formula() -> None:
    module = AdditiveAttention(3, 5, 7, dropout=0.1)
    assert dict(module.named_children()).keys() == {"W_q", "W_k", "w_v"}
    for layer, shape in ((module.W_q, (7, 3)), (module.W_k, (7, 5)), (module.w_v, (1, 7))):
        assert isinstance(layer, nn.Linear)
        assert [name for name, _ in layer.named_parameters()] == ["weight"]
        assert layer.weight.shape == shape
    assert "dropout=0.1" in repr(module)


def test_valid_lens_and_extra_batch_dims() -> None:
    module = AdditiveAttention(4, 4, 8)
    query, key, value = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 6)
    output, weights = module(query, key, value, valid_lens=torch.tensor([2, 5]))
    assert output.shape == (2, 3, 1, 6)
    assert weights is not None
    assert torch.equal(weights[0, :, :, 2:], torch.zeros(3, 1, 3))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 1))


def test_dropout_in_training_only_and_weights_are_the_ones_applied() -> None:
    module = AdditiveAttention(4, 4, 8, dropout=0.5)
    query, key, value = torch.randn(3, 6, 4), torch.randn(3, 7, 4), torch.randn(3, 7, 2)
    output, weights = module.train()(query, key, value)
    assert weights is not None
    assert (weights == 0).any()
    torch.testing.assert_close(output, weights @ value)
    _, eval_weights = module.eval()(query, key, value)
    assert eval_weights is not None
    assert (eval_weights > 0).all()


def test_gradcheck_in_float64() -> None:
    module = AdditiveAttention(2, 3, 4).double()
    query = torch.randn(2, 2, 2, dtype=torch.float64, requires_grad=True)
    key = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    value = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda q, k, v: module(q, k, v, valid_lens=torch.tensor([0, 2])).output, (query, key, value)
    )
