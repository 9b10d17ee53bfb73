"""DynamicConv against a hand-built band matrix and PyTorch's conv1d; routing against a loop."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attention_book.variants import DynamicConv, RoutingOutput, dynamic_routing, squash

# --- DynamicConv ---


def conv(embed_dim: int, kernel_size: int, num_heads: int, *, causal: bool = True) -> DynamicConv:
    return DynamicConv(embed_dim, kernel_size, num_heads, causal=causal).double()


def band_matrix(weights: Tensor, causal: bool) -> Tensor:
    """The (N, H, L, L) attention matrix holding the window weights, entry by entry."""
    num, heads, length, size = weights.shape
    before = size - 1 if causal else size // 2
    dense = torch.zeros(num, heads, length, length, dtype=weights.dtype)
    for i in range(length):
        for k in range(size):
            j = i - before + k
            if 0 <= j < length:  # a position outside the sequence is a zero vector
                dense[:, :, i, j] = weights[:, :, i, k]
    return dense


CASES = [
    # (num, length, embed_dim, kernel_size, num_heads, causal)
    (2, 5, 6, 3, 2, True),
    (1, 1, 4, 3, 1, True),
    (3, 13, 6, 4, 3, True),  # even kernel, causal
    (2, 7, 8, 1, 4, True),  # kernel of one: the identity
    (2, 5, 6, 7, 2, True),  # kernel longer than the sequence
    (2, 13, 6, 5, 3, False),
    (1, 7, 5, 1, 5, False),
    (2, 5, 4, 9, 2, False),
]


@pytest.mark.parametrize(("num", "length", "embed_dim", "kernel_size", "heads", "causal"), CASES)
def test_equals_attention_with_a_band_matrix(
    num: int, length: int, embed_dim: int, kernel_size: int, heads: int, causal: bool
) -> None:
    module = conv(embed_dim, kernel_size, heads, causal=causal)
    x = torch.randn(num, length, embed_dim, dtype=torch.float64)
    before = x.clone()
    output, weights = module(x)
    assert weights is not None
    assert output.shape == (num, length, embed_dim)
    assert weights.shape == (num, heads, length, kernel_size)
    # weights: a softmax over the kernel of a linear map of the current position only
    logits = x @ module.kernel_proj.weight.T  # (N, L, H * K)
    expected_weights = torch.softmax(logits.view(num, length, heads, kernel_size), dim=-1)
    torch.testing.assert_close(weights, expected_weights.transpose(1, 2))
    # output: attention with the band matrix, head h over its own features
    values = x.view(num, length, heads, -1).transpose(1, 2)  # (N, H, L, E / H)
    mixed = band_matrix(weights, causal) @ values  # (N, H, L, E / H)
    torch.testing.assert_close(output, mixed.transpose(1, 2).reshape(num, length, embed_dim))
    assert torch.equal(x, before)


@pytest.mark.parametrize(("kernel_size", "causal"), [(1, True), (4, True), (5, False)])
def test_a_constant_kernel_is_a_depthwise_conv1d(kernel_size: int, causal: bool) -> None:
    module = conv(6, kernel_size, 2, causal=causal)
    with torch.no_grad():
        module.kernel_proj.weight.zero_()  # every position predicts the uniform kernel
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    output, _ = module(x)
    before = kernel_size - 1 if causal else kernel_size // 2
    padded = F.pad(x.transpose(1, 2), (before, kernel_size - 1 - before))  # (N, E, L + K - 1)
    box = torch.full((6, 1, kernel_size), 1 / kernel_size, dtype=torch.float64)
    expected = F.conv1d(padded, box, groups=6).transpose(1, 2)  # (N, L, E)
    torch.testing.assert_close(output, expected)


def test_causal_output_does_not_see_the_future() -> None:
    module = conv(4, 3, 2)
    x = torch.randn(1, 8, 4, dtype=torch.float64)
    changed = x.clone()
    changed[:, 5:] += 10.0
    torch.testing.assert_close(module(x).output[:, :5], module(changed).output[:, :5])
    assert not torch.allclose(module(x).output[:, 5:], module(changed).output[:, 5:])


def test_non_contiguous_input_and_gradcheck() -> None:
    module = conv(4, 3, 2, causal=False)
    x = torch.randn(1, 4, 5, dtype=torch.float64).transpose(1, 2)  # (N, L, E) = (1, 5, 4)
    assert not x.is_contiguous()
    torch.testing.assert_close(module(x).output, module(x.contiguous()).output)
    x = x.contiguous().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: module(x).output, (x,))
    torch.autograd.backward(module(x).output.sum())
    assert module.kernel_proj.weight.grad is not None


def test_module_moves_and_repr() -> None:
    module = DynamicConv(8, 3, 2, causal=False)
    assert not module.kernel_proj.bias  # the paper's linear map has no bias
    assert "embed_dim=8, kernel_size=3, num_heads=2, causal=False" in repr(module)
    assert all(t.device.type == "meta" for t in DynamicConv(8, 3, 2).to("meta").parameters())
    doubled = DynamicConv(8, 3, 2).to(torch.float64)
    assert doubled(torch.randn(1, 4, 8, dtype=torch.float64)).output.dtype == torch.float64


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: DynamicConv(8, 0, 2), ValueError, "kernel_size must be at least 1; got 0"),
        (lambda: DynamicConv(8, 3, 0), ValueError, "num_heads must be at least 1; got 0"),
        (lambda: DynamicConv(0, 3, 1), ValueError, "embed_dim must be at least 1; got 0"),
        (
            lambda: DynamicConv(8, 3, 3),
            ValueError,
            "embed_dim must be divisible by num_heads = 3; got embed_dim = 8",
        ),
        (
            lambda: DynamicConv(8, 4, 2, causal=False),
            ValueError,
            r"kernel_size must be odd for a centred window \(causal=False\); got 4",
        ),
        (
            lambda: DynamicConv(8, 3, 2)(torch.randn(5, 8)),
            ValueError,
            r"x must have 3 dims \(N, L, E\); got shape \(5, 8\)",
        ),
        (
            lambda: DynamicConv(8, 3, 2)(torch.randn(1, 5, 6)),
            ValueError,
            r"x must have E = 8 features \(N, L, E\); got \(1, 5, 6\)",
        ),
        (
            lambda: DynamicConv(8, 3, 2)(torch.ones(1, 5, 8, dtype=torch.int64)),
            TypeError,
            "x must be a floating-point tensor",
        ),
    ],
)
def test_conv_errors(make: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()  # type: ignore[operator]


# --- squash and dynamic_routing ---


def test_squash_matches_the_formula() -> None:
    s = torch.randn(4, 3, 5, dtype=torch.float64)
    norm = s.norm(dim=-1, keepdim=True)
    expected = norm**2 / (1 + norm**2) * s / norm
    torch.testing.assert_close(squash(s), expected)
    torch.testing.assert_close(squash(s.transpose(1, 2), dim=1), expected.transpose(1, 2))
    assert torch.all(squash(s).norm(dim=-1) < 1)
    assert torch.autograd.gradcheck(squash, (s.requires_grad_(True),))


def test_squash_is_safe_at_zero() -> None:
    s = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    out = squash(s)
    assert torch.equal(out, torch.zeros(2, 3, dtype=torch.float64))
    torch.autograd.backward(out.sum())
    assert s.grad is not None
    assert torch.equal(s.grad, torch.zeros(2, 3, dtype=torch.float64))


def routing_loop(predictions: Tensor, num_iterations: int) -> tuple[Tensor, Tensor]:
    """Procedure 1 of Sabour et al. (2017), one capsule at a time, in float64."""
    num, inputs, outputs, _ = predictions.shape
    v = torch.zeros(num, outputs, predictions.shape[-1], dtype=torch.float64)
    c = torch.zeros(num, inputs, outputs, dtype=torch.float64)
    for n in range(num):
        b = [[0.0] * outputs for _ in range(inputs)]
        for _ in range(num_iterations):
            for i in range(inputs):  # c_i = softmax(b_i)
                total = sum(torch.exp(torch.tensor(b[i][k])) for k in range(outputs))
                for j in range(outputs):
                    c[n, i, j] = torch.exp(torch.tensor(b[i][j])) / total
            for j in range(outputs):  # s_j = sum_i c_ij u_j|i, v_j = squash(s_j)
                s_j = sum(c[n, i, j] * predictions[n, i, j] for i in range(inputs))
                length = float(torch.linalg.vector_norm(s_j))
                v[n, j] = length**2 / (1 + length**2) * s_j / length
            for i in range(inputs):  # b_ij <- b_ij + u_j|i . v_j
                for j in range(outputs):
                    b[i][j] += float(predictions[n, i, j] @ v[n, j])
    return v, c


@pytest.mark.parametrize(
    ("num", "inputs", "outputs", "dim", "iterations"),
    [(2, 5, 3, 4, 3), (1, 1, 1, 2, 1), (1, 7, 2, 3, 5), (3, 4, 5, 1, 2), (1, 13, 3, 8, 3)],
)
def test_routing_matches_the_papers_procedure(
    num: int, inputs: int, outputs: int, dim: int, iterations: int
) -> None:
    predictions = torch.randn(num, inputs, outputs, dim, dtype=torch.float64)
    before = predictions.clone()
    result = dynamic_routing(predictions, iterations)
    assert isinstance(result, RoutingOutput)
    v, c = routing_loop(predictions, iterations)
    torch.testing.assert_close(result.outputs, v)
    torch.testing.assert_close(result.coupling, c)
    torch.testing.assert_close(result.coupling.sum(dim=-1), torch.ones(num, inputs).double())
    assert torch.equal(predictions, before)


def test_one_iteration_couples_uniformly_and_gradients_flow() -> None:
    predictions = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    _, coupling = dynamic_routing(predictions, 1)
    torch.testing.assert_close(coupling, torch.full((2, 4, 3), 1 / 3, dtype=torch.float64))
    assert torch.autograd.gradcheck(lambda u: dynamic_routing(u).outputs, (predictions,))
    assert torch.autograd.gradcheck(lambda u: dynamic_routing(u).coupling, (predictions,))


def test_agreeing_inputs_are_routed_together() -> None:
    u = torch.zeros(1, 4, 2, 2)
    u[0, :2, 0] = torch.tensor([2.0, 0.0])  # inputs 0, 1 agree on output 0
    u[0, 2:, 1] = torch.tensor([0.0, 2.0])  # inputs 2, 3 agree on output 1
    u[0, 0, 1], u[0, 1, 1] = torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.0])
    u[0, 2, 0], u[0, 3, 0] = torch.tensor([0.0, 1.0]), torch.tensor([0.0, -1.0])
    coupling = dynamic_routing(u, 3).coupling[0]
    assert torch.all(coupling[:2, 0] > 0.9)
    assert torch.all(coupling[2:, 1] > 0.9)
    later = dynamic_routing(u, 5).coupling[0]
    assert torch.all(later[:2, 0] > coupling[:2, 0])  # more iterations, sharper assignment


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: dynamic_routing(torch.randn(4, 3, 2)),
            ValueError,
            r"predictions must have 4 dims \(N, I, J, D\); got shape \(4, 3, 2\)",
        ),
        (
            lambda: dynamic_routing(torch.randn(1, 4, 3, 2), 0),
            ValueError,
            "num_iterations must be at least 1; got 0",
        ),
        (
            lambda: dynamic_routing(torch.ones(1, 4, 3, 2, dtype=torch.int64)),
            TypeError,
            "predictions must be a floating-point tensor",
        ),
        (
            lambda: squash(torch.ones(3, dtype=torch.int64)),
            TypeError,
            "s must be a floating-point tensor",
        ),
    ],
)
def test_routing_errors(make: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        make()  # type: ignore[operator]
