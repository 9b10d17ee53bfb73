"""NadarayaWatsonRegression, leave_one_out and the training loop of the book."""

from __future__ import annotations

import itertools

import torch

from attention_book import (
    NadarayaWatsonRegression,
    kernel_regression_data,
    leave_one_out,
    nadaraya_watson,
    train_nadaraya_watson,
)


def test_leave_one_out_drops_each_samples_own_pair() -> None:
    x = torch.arange(5.0)
    rows = leave_one_out(x)
    assert rows.shape == (5, 4)
    for i in range(5):
        assert rows[i].tolist() == [v for j, v in enumerate(x.tolist()) if j != i]
    assert leave_one_out(torch.tensor([7.0])).shape == (1, 0)


def test_model_has_one_scalar_parameter_w_starting_at_one() -> None:
    model = NadarayaWatsonRegression()
    assert [name for name, _ in model.named_parameters()] == ["w"]
    assert model.w.tolist() == [1.0]
    assert NadarayaWatsonRegression(init=2.5).w.item() == 2.5


def test_is_gaussian_nadaraya_watson_with_bandwidth_one_over_w() -> None:
    model = NadarayaWatsonRegression(init=4.0).double()
    key = torch.linspace(0, 5, 20, dtype=torch.float64)
    value = torch.cos(key)
    query = torch.tensor([0.3, 2.2, 4.4], dtype=torch.float64)
    shared = model(query, key, value)  # keys (S,)
    per_query = model(query, key.expand(3, 20), value.expand(3, 20))  # keys (L, S)
    expected = nadaraya_watson(query, key, value, bandwidth=1 / 4.0)
    torch.testing.assert_close(shared.output, expected.output)
    torch.testing.assert_close(per_query.output, expected.output)
    assert shared.weights is not None
    assert expected.weights is not None
    torch.testing.assert_close(shared.weights, expected.weights)


def test_training_is_deterministic_and_lowers_the_loss() -> None:
    data = kernel_regression_data()
    histories, widths = [], []
    for _ in range(2):
        model = NadarayaWatsonRegression()
        histories.append(train_nadaraya_watson(model, data.x_train, data.y_train))
        widths.append(model.w.item())
    assert histories[0] == histories[1]
    assert widths[0] == widths[1] != 1.0
    history = histories[0]
    assert len(history) == 5
    assert all(later < earlier for earlier, later in itertools.pairwise(history))


def test_first_loss_is_the_leave_one_out_mean_squared_error() -> None:
    data = kernel_regression_data(n_train=10, seed=3)
    model = NadarayaWatsonRegression()
    keys, values = leave_one_out(data.x_train), leave_one_out(data.y_train)
    with torch.no_grad():
        before = model(data.x_train, keys, values).output
    expected_mean = ((before - data.y_train) ** 2).mean().item()
    expected_sum = ((before - data.y_train) ** 2).sum().item()
    mean_history = train_nadaraya_watson(model, data.x_train, data.y_train, epochs=1)
    sum_history = train_nadaraya_watson(
        NadarayaWatsonRegression(), data.x_train, data.y_train, epochs=1, reduction="sum"
    )
    assert abs(mean_history[0] - expected_mean) < 1e-6
    assert abs(sum_history[0] - expected_sum) < 1e-5
    assert train_nadaraya_watson(model, data.x_train, data.y_train, epochs=0) == []


def test_gradcheck_in_float64() -> None:
    model = NadarayaWatsonRegression(init=1.5).double()
    query = torch.tensor([0.1, 0.7], dtype=torch.float64, requires_grad=True)
    key = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)
    value = torch.rand(2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda q, k, v: model(q, k, v).output, (query, key, value))
