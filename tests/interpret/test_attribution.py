"""integrated_gradients, gradient_times_input and grad_cam against Captum and exact cases."""

from __future__ import annotations

import pytest
import torch
from captum.attr import InputXGradient, IntegratedGradients, LayerGradCam
from torch import Tensor, nn

from attention_book.interpret import grad_cam, gradient_times_input, integrated_gradients


def mlp(*, seed: int = 0, outputs: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, outputs)).double()


def cnn(*, seed: int = 0, inplace: bool = False) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, kernel_size=3, padding=1),
        nn.ReLU(inplace=inplace),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(24, 3),
    ).double()


def state_of(model: nn.Module) -> list[tuple[str, Tensor, bool, bool]]:
    return [
        (name, p.detach().clone(), p.requires_grad, p.grad is None)
        for name, p in model.named_parameters()
    ]


def assert_same_state(model: nn.Module, before: list[tuple[str, Tensor, bool, bool]]) -> None:
    for (name, value, requires_grad, no_grad), (name_now, p) in zip(
        before, model.named_parameters(), strict=True
    ):
        assert name == name_now
        torch.testing.assert_close(p.detach(), value, rtol=0, atol=0)
        assert p.requires_grad == requires_grad
        assert (p.grad is None) == no_grad


def no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks
        for m in model.modules()
    )


# ---------- integrated_gradients ----------


@pytest.mark.parametrize("steps", [2, 7, 50])  # Captum needs 2 or more
@pytest.mark.parametrize("target", [0, 2, "tensor"])
def test_integrated_gradients_matches_captum(steps: int, target: int | str) -> None:
    model = mlp()
    inputs = torch.randn(4, 5, dtype=torch.float64)
    chosen = torch.tensor([2, 0, 1, 2]) if target == "tensor" else target
    assert not isinstance(chosen, str)
    expected = IntegratedGradients(model).attribute(
        inputs, target=chosen, n_steps=steps, method="riemann_middle"
    )
    got = integrated_gradients(model, inputs, target=chosen, steps=steps)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


def test_integrated_gradients_with_baselines_matches_captum() -> None:
    model = mlp(seed=1)
    inputs = torch.randn(3, 5, dtype=torch.float64)
    baselines = torch.randn(3, 5, dtype=torch.float64)
    expected = IntegratedGradients(model).attribute(
        inputs, baselines, target=1, n_steps=20, method="riemann_middle"
    )
    got = integrated_gradients(model, inputs, baselines, target=1, steps=20)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shape", [(1, 5), (5,), ()])
def test_integrated_gradients_broadcasts_baselines(shape: tuple[int, ...]) -> None:
    model = mlp(seed=2)
    inputs = torch.randn(3, 5, dtype=torch.float64)
    baseline = torch.randn(shape, dtype=torch.float64)
    full = baseline.expand(3, 5).clone()
    expected = IntegratedGradients(model).attribute(
        inputs, full, target=0, n_steps=10, method="riemann_middle"
    )
    torch.testing.assert_close(
        integrated_gradients(model, inputs, baseline, target=0, steps=10), expected
    )


def test_integrated_gradients_of_images_matches_captum() -> None:
    model = cnn()
    inputs = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    expected = IntegratedGradients(model).attribute(
        inputs, target=1, n_steps=8, method="riemann_middle"
    )
    got = integrated_gradients(model, inputs, target=1, steps=8)
    assert got.shape == (2, 2, 5, 5)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("keepdim", [True, False])
def test_integrated_gradients_with_one_output_per_example(keepdim: bool) -> None:
    model = mlp(outputs=1)

    def forward(x: Tensor) -> Tensor:
        out: Tensor = model(x)
        return out if keepdim else out.squeeze(1)

    inputs = torch.randn(4, 5, dtype=torch.float64)
    expected = IntegratedGradients(forward).attribute(inputs, n_steps=9, method="riemann_middle")
    torch.testing.assert_close(integrated_gradients(forward, inputs, steps=9), expected)


def test_integrated_gradients_completeness_and_quadrature_order() -> None:
    model = mlp(seed=3)
    inputs = torch.randn(4, 5, dtype=torch.float64)
    baselines = torch.randn(4, 5, dtype=torch.float64)
    with torch.no_grad():
        gap = model(inputs)[:, 2] - model(baselines)[:, 2]

    def error(steps: int) -> float:
        attributions = integrated_gradients(model, inputs, baselines, target=2, steps=steps)
        return float((attributions.sum(dim=1) - gap).abs().max())

    assert error(200) < 1e-4 * float(gap.abs().max())
    assert error(20) / error(40) > 3.5  # the midpoint rule's error falls like 1 / m^2


def test_integrated_gradients_with_one_step_is_the_midpoint_gradient() -> None:
    model = mlp(seed=5)
    inputs = torch.randn(3, 5, dtype=torch.float64)
    baselines = torch.randn(3, 5, dtype=torch.float64)
    midpoint = ((inputs + baselines) / 2).requires_grad_(True)
    (gradient,) = torch.autograd.grad(model(midpoint)[:, 1].sum(), midpoint)
    got = integrated_gradients(model, inputs, baselines, target=1, steps=1)
    torch.testing.assert_close(got, (inputs - baselines) * gradient)


def test_integrated_gradients_is_exact_for_a_linear_function() -> None:
    weights = torch.tensor([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.25]], dtype=torch.float64)
    inputs = torch.randn(3, 3, dtype=torch.float64)
    baselines = torch.randn(3, 3, dtype=torch.float64)
    got = integrated_gradients(lambda x: x @ weights, inputs, baselines, target=1, steps=1)
    torch.testing.assert_close(got, (inputs - baselines) * weights[:, 1])


def test_integrated_gradients_leaves_the_callers_tensors_alone() -> None:
    model = mlp()
    inputs = torch.randn(2, 5, dtype=torch.float64)
    baselines = torch.randn(2, 5, dtype=torch.float64)
    copy_inputs, copy_baselines = inputs.clone(), baselines.clone()
    before = state_of(model)
    got = integrated_gradients(model, inputs, baselines, target=0, steps=5)
    assert not inputs.requires_grad
    assert not baselines.requires_grad
    assert got.grad_fn is None
    assert not got.requires_grad
    torch.testing.assert_close(inputs, copy_inputs, rtol=0, atol=0)
    torch.testing.assert_close(baselines, copy_baselines, rtol=0, atol=0)
    assert_same_state(model, before)
    # inputs that require grad are accepted and keep their flag; no_grad is no obstacle
    leaf = inputs.clone().requires_grad_(True)
    with torch.no_grad():
        again = integrated_gradients(model, leaf, baselines, target=0, steps=5)
    assert leaf.requires_grad
    assert leaf.grad is None
    torch.testing.assert_close(again, got)


def test_integrated_gradients_errors() -> None:
    model = mlp()
    x = torch.randn(2, 5, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"forward must be a callable"):
        integrated_gradients(3, x)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match=r"inputs must be a floating-point tensor; got dtype torch.int64"
    ):
        integrated_gradients(model, torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(TypeError, match=r"baselines must have the dtype of inputs"):
        integrated_gradients(model, x, x.float(), target=0)
    with pytest.raises(
        ValueError, match=r"baselines must broadcast to inputs \(N, ...\) = \(2, 5\); got \(3, 5\)"
    ):
        integrated_gradients(model, x, torch.zeros(3, 5, dtype=torch.float64), target=0)
    with pytest.raises(ValueError, match=r"steps must be at least 1; got 0"):
        integrated_gradients(model, x, target=0, steps=0)
    with pytest.raises(TypeError, match=r"steps must be an int; got float"):
        integrated_gradients(model, x, target=0, steps=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"target must lie in \[0, C\) = \[0, 3\); got 3"):
        integrated_gradients(model, x, target=3)
    with pytest.raises(ValueError, match=r"target must be at least 0; got -1"):
        integrated_gradients(model, x, target=-1)
    with pytest.raises(ValueError, match=r"target must lie in \[0, C\) = \[0, 3\)"):
        integrated_gradients(model, x, target=torch.tensor([0, 5]))
    with pytest.raises(TypeError, match=r"target must be an integer tensor of output columns"):
        integrated_gradients(model, x, target=torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"target must have shape \(N,\) = \(2,\); got \(3,\)"):
        integrated_gradients(model, x, target=torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match=r"target must be None, an int or an integer tensor"):
        integrated_gradients(model, x, target=True)
    with pytest.raises(
        ValueError, match=r"target must be given when forward returns several values"
    ):
        integrated_gradients(model, x)
    with pytest.raises(
        ValueError, match=r"forward must return one row per example, \(10, ...\); got \(1, 3\)"
    ):
        integrated_gradients(lambda z: model(z)[:1], x, target=0, steps=5)
    with pytest.raises(ValueError, match=r"forward must return \(N, C\) scores"):
        integrated_gradients(lambda z: z.sum(dim=1), x, target=0)


# ---------- gradient_times_input ----------


@pytest.mark.parametrize("target", [1, "tensor"])
def test_gradient_times_input_matches_captum(target: int | str) -> None:
    model = mlp(seed=4)
    inputs = torch.randn(4, 5, dtype=torch.float64)
    chosen = torch.tensor([0, 1, 2, 0]) if target == "tensor" else target
    assert not isinstance(chosen, str)
    expected = InputXGradient(model).attribute(inputs.clone().requires_grad_(True), target=chosen)
    got = gradient_times_input(model, inputs, target=chosen)
    torch.testing.assert_close(got, expected)
    assert not inputs.requires_grad
    assert got.grad_fn is None


def test_gradient_times_input_errors() -> None:
    model = mlp()
    with pytest.raises(TypeError, match=r"forward must be a callable"):
        gradient_times_input(None, torch.ones(2, 5))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"inputs must be a floating-point tensor"):
        gradient_times_input(model, torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target must be given"):
        gradient_times_input(model, torch.ones(2, 5, dtype=torch.float64))


# ---------- grad_cam ----------


@pytest.mark.parametrize("target", [0, 1, 2])
@pytest.mark.parametrize("layer_index", [0, 2, 3])
def test_grad_cam_matches_captum(target: int, layer_index: int) -> None:
    model = cnn().eval()
    layer = model[layer_index]
    inputs = torch.randn(3, 2, 6, 5, dtype=torch.float64)
    expected = LayerGradCam(model, layer).attribute(inputs, target, relu_attributions=True)
    got = grad_cam(model, layer, inputs, target)
    assert got.shape == (3, 6, 5)
    torch.testing.assert_close(got, expected.squeeze(1))
    assert (got >= 0).all()
    assert got.grad_fn is None


@pytest.mark.parametrize("training", [True, False])
def test_grad_cam_leaves_model_and_inputs_alone(training: bool) -> None:
    model = cnn(seed=5).train(training)
    model[0].weight.requires_grad_(False)  # a frozen parameter stays frozen
    inputs = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    copy = inputs.clone()
    before = state_of(model)
    modes = [m.training for m in model.modules()]
    grad_cam(model, model[2], inputs, 1)
    assert_same_state(model, before)
    assert [m.training for m in model.modules()] == modes
    assert no_hooks(model)
    assert not inputs.requires_grad
    torch.testing.assert_close(inputs, copy, rtol=0, atol=0)


def test_grad_cam_with_frozen_model_and_in_place_activation() -> None:
    inputs = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    model = cnn(seed=6)
    expected = grad_cam(model, model[2], inputs, 0)
    frozen = cnn(seed=6, inplace=True).requires_grad_(False)
    torch.testing.assert_close(grad_cam(frozen, frozen[2], inputs, 0), expected)
    assert expected.abs().max() > 0


def test_grad_cam_errors_leave_no_hook() -> None:
    model = cnn().eval()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match=r"model must be a Module; got int"):
        grad_cam(3, model[0], x, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"layer must be a Module; got str"):
        grad_cam(model, "conv", x, 0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"inputs must be a floating-point tensor"):
        grad_cam(model, model[0], torch.ones(1, 2, 4, 4, dtype=torch.long), 0)
    with pytest.raises(TypeError, match=r"target must be an int; got Tensor"):
        grad_cam(model, model[0], x, torch.tensor(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"target must lie in \[0, C\) = \[0, 3\); got 3"):
        grad_cam(model, model[0], x, 3)
    with pytest.raises(ValueError, match=r"layer must output \(N, C, h, w\); got shape \(1, 24\)"):
        grad_cam(model, model[5], x, 0)
    twice = nn.Sequential(
        model[0], nn.Conv2d(4, 2, 1).double(), model[0], nn.AdaptiveAvgPool2d(1), nn.Flatten()
    )
    with pytest.raises(ValueError, match=r"layer must run exactly once .*; it ran 2 times"):
        grad_cam(twice, model[0], x, 0)
    with pytest.raises(ValueError, match=r"it ran 0 times"):
        grad_cam(model, nn.Conv2d(2, 2, 1), x, 0)

    class Pair(nn.Module):
        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            return x, x

    class UsesPair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pair = Pair()

        def forward(self, x: Tensor) -> Tensor:
            first: Tensor = self.pair(x)[0]
            return first.flatten(1)

    uses_pair = UsesPair()
    with pytest.raises(TypeError, match=r"layer must return a tensor \(N, C, h, w\); got tuple"):
        grad_cam(uses_pair, uses_pair.pair, x, 0)
    assert no_hooks(model)
    assert no_hooks(twice)
    assert no_hooks(uses_pair)
