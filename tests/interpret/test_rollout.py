"""attention_rollout and attention_flow against hand loops, closed forms and brute-force cuts."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import Tensor

from attention_book.interpret import attention_flow, attention_rollout

FUSIONS = ["mean", "max", "min"]


def random_weights(
    num_layers: int, batch: int, heads: int, length: int, *, seed: int = 0
) -> list[Tensor]:
    """Softmax weights (N, H, L, L) per layer, float64."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.softmax(
            2 * torch.randn(batch, heads, length, length, generator=generator, dtype=torch.float64),
            dim=-1,
        )
        for _ in range(num_layers)
    ]


def fused_reference(layer: Tensor, fusion: str, residual: bool) -> Tensor:
    """One example's (H, L, L) weights fused entry by entry, then 0.5 A + 0.5 I, row-normalised."""
    heads, length, _ = layer.shape
    A = torch.zeros(length, length, dtype=torch.float64)
    for i in range(length):
        for j in range(length):
            values = [float(layer[h, i, j]) for h in range(heads)]
            A[i, j] = {"mean": sum(values) / heads, "max": max(values), "min": min(values)}[fusion]
    if residual:
        for i in range(length):
            A[i, i] += 1.0
            A[i] = A[i] / A[i].sum()  # (A + I) / rowsum is (0.5 A + 0.5 I) / rowsum
    return A


def rollout_reference(weights: list[Tensor], fusion: str, residual: bool) -> Tensor:
    batch, _, length, _ = weights[0].shape
    result = torch.zeros(batch, length, length, dtype=torch.float64)
    for n in range(batch):
        product = torch.eye(length, dtype=torch.float64)
        for layer in weights:  # first layer first: each new layer multiplies from the left
            product = fused_reference(layer[n].double(), fusion, residual) @ product
        result[n] = product
    return result


def min_cut_flow(capacities: list[Tensor], source: int, sink: int) -> float:
    """Max flow from top position source to bottom position sink as the minimum cut.

    capacities[k] (L, L) holds the edges from layer k + 1 (rows) down to layer k (columns).
    Every set S of intermediate nodes is tried as the source side: the cut is the capacity
    of all edges from {source} + S to {sink} + the other intermediate nodes.
    """
    num_layers, length = len(capacities), capacities[0].shape[0]
    middle = [(k, p) for k in range(1, num_layers) for p in range(length)]
    best = float("inf")
    for chosen in itertools.product([False, True], repeat=len(middle)):
        source_side = {node for node, inside in zip(middle, chosen, strict=True) if inside}
        source_side.add((num_layers, source))
        sink_side = {node for node, inside in zip(middle, chosen, strict=True) if not inside}
        sink_side.add((0, sink))
        cut = sum(
            float(capacities[k][i, j])
            for k in range(num_layers)
            for i in range(length)
            for j in range(length)
            if (k + 1, i) in source_side and (k, j) in sink_side
        )
        best = min(best, cut)
    return best


# ---------- attention_rollout ----------


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize(("num_layers", "length"), [(1, 1), (1, 5), (2, 7), (4, 5), (3, 13)])
def test_rollout_matches_hand_loop(
    fusion: str, residual: bool, num_layers: int, length: int
) -> None:
    weights = random_weights(num_layers, 2, 3, length)
    expected = rollout_reference(weights, fusion, residual)
    got = attention_rollout(weights, head_fusion=fusion, residual=residual)  # type: ignore[arg-type]
    assert got.shape == (2, length, length)
    torch.testing.assert_close(got, expected)


def test_rollout_float32_matches_float64() -> None:
    weights = random_weights(3, 2, 4, 7)
    got = attention_rollout([w.float() for w in weights])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, attention_rollout(weights).float())


@pytest.mark.parametrize("residual", [True, False])
def test_rollout_rows_sum_to_one_with_mean_fusion(residual: bool) -> None:
    rollout = attention_rollout(random_weights(5, 3, 4, 9), residual=residual)
    torch.testing.assert_close(rollout.sum(dim=-1), torch.ones(3, 9, dtype=torch.float64))
    assert (rollout >= 0).all()


def test_rollout_of_the_docstring_example() -> None:
    first = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    second = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    # without the residual term position 0 ends up with position 1's token (order matters)
    no_residual = attention_rollout([first, second], residual=False)[0]
    torch.testing.assert_close(no_residual, torch.tensor([[0.0, 1.0], [0.0, 1.0]]))
    reversed_order = attention_rollout([second, first], residual=False)[0]
    torch.testing.assert_close(reversed_order, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    torch.testing.assert_close(
        attention_rollout([first, second])[0], torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    )


def test_rollout_single_layer_is_the_fused_residual_matrix() -> None:
    (layer,) = random_weights(1, 1, 2, 5)
    fused = 0.5 * layer.mean(dim=1) + 0.5 * torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(attention_rollout([layer]), fused)  # rows already sum to 1


def test_rollout_leaves_inputs_alone_and_is_differentiable() -> None:
    weights = [w.requires_grad_(True) for w in random_weights(3, 1, 2, 4)]
    copies = [w.detach().clone() for w in weights]
    rollout = attention_rollout(weights, head_fusion="max")
    for w, copy in zip(weights, copies, strict=True):
        torch.testing.assert_close(w, copy, rtol=0, atol=0)
        assert w.requires_grad
    rollout[0, 0, 1].backward()  # type: ignore[no-untyped-call]
    assert all(w.grad is not None for w in weights)
    assert torch.autograd.gradcheck(lambda *ws: attention_rollout(list(ws)), tuple(weights))


def test_rollout_accepts_a_tuple() -> None:
    weights = random_weights(2, 1, 2, 3)
    torch.testing.assert_close(attention_rollout(tuple(weights)), attention_rollout(weights))


# ---------- attention_flow ----------


@pytest.mark.parametrize("fusion", FUSIONS)
def test_flow_of_one_layer_is_the_normalised_capacity(fusion: str) -> None:
    (layer,) = random_weights(1, 2, 3, 5)
    fused = torch.stack([fused_reference(layer[n], fusion, True) for n in range(2)])
    got = attention_flow([layer], head_fusion=fusion)  # type: ignore[arg-type]
    torch.testing.assert_close(got, fused / fused.sum(dim=-1, keepdim=True))


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("residual", [True, False])
def test_flow_of_two_layers_is_a_sum_of_minima(fusion: str, residual: bool) -> None:
    # source i -> middle k -> sink j: the paths share no edge, so the flow is sum_k min(...)
    weights = random_weights(2, 2, 3, 6, seed=3)
    got = attention_flow(weights, head_fusion=fusion, residual=residual)  # type: ignore[arg-type]
    for n in range(2):
        lower = fused_reference(weights[0][n], fusion, residual)
        upper = fused_reference(weights[1][n], fusion, residual)
        flow = torch.minimum(upper[:, :, None], lower[None, :, :]).sum(dim=1)  # (i, k, j)
        torch.testing.assert_close(got[n], flow / flow.sum(dim=-1, keepdim=True))


@pytest.mark.parametrize(
    ("num_layers", "length", "fusion"), [(3, 3, "mean"), (3, 4, "max"), (4, 2, "min")]
)
def test_flow_of_deeper_stacks_is_the_minimum_cut(
    num_layers: int, length: int, fusion: str
) -> None:
    weights = random_weights(num_layers, 1, 2, length, seed=7)
    capacities = [fused_reference(layer[0], fusion, True) for layer in weights]
    flow = torch.tensor(
        [[min_cut_flow(capacities, i, j) for j in range(length)] for i in range(length)],
        dtype=torch.float64,
    )
    got = attention_flow(weights, head_fusion=fusion)  # type: ignore[arg-type]
    torch.testing.assert_close(got[0], flow / flow.sum(dim=-1, keepdim=True))


def test_flow_differs_from_rollout_and_keeps_dtype() -> None:
    weights = random_weights(3, 2, 2, 5)
    flow = attention_flow([w.float() for w in weights])
    assert flow.dtype == torch.float32
    assert flow.shape == (2, 5, 5)
    assert flow.grad_fn is None
    torch.testing.assert_close(flow.sum(dim=-1), torch.ones(2, 5))
    assert (flow - attention_rollout(weights).float()).abs().max() > 1e-3


def test_flow_row_without_flow_stays_zero() -> None:
    layer = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])  # position 1 reads nothing
    flow = attention_flow([layer, layer], residual=False)
    torch.testing.assert_close(flow[0], torch.tensor([[0.0, 0.0], [0.0, 0.0]]))
    flow = attention_flow([layer], residual=False)
    torch.testing.assert_close(flow[0], torch.tensor([[0.0, 1.0], [0.0, 0.0]]))


def test_flow_leaves_inputs_alone_and_accepts_grad() -> None:
    weights = [w.requires_grad_(True) for w in random_weights(2, 1, 2, 4)]
    copies = [w.detach().clone() for w in weights]
    attention_flow(weights)
    for w, copy in zip(weights, copies, strict=True):
        torch.testing.assert_close(w, copy, rtol=0, atol=0)
        assert w.requires_grad


def test_flow_without_networkx_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "networkx", None)  # import networkx now raises ImportError
    with pytest.raises(ImportError, match=r"attention_flow needs networkx: pip install"):
        attention_flow([torch.full((1, 1, 2, 2), 0.5)])


def test_import_without_networkx_and_captum() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["networkx"] = None  # import networkx now raises ImportError
        sys.modules["captum"] = None
        import torch
        from attention_book.interpret import attention_flow, attention_rollout
        weights = [torch.full((1, 1, 2, 2), 0.5)]
        print(attention_rollout(weights).sum().item())
        try:
            attention_flow(weights)
        except ImportError as error:
            print(error)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "2.0"
    assert lines[1] == (
        "attention_flow needs networkx: pip install 'attention_book[interpret]' "
        "or pip install networkx"
    )


# ---------- errors (both functions) ----------

FUNCTIONS = [attention_rollout, attention_flow]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_errors(function: object) -> None:
    assert callable(function)
    good = torch.full((1, 2, 3, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"weights must hold at least one layer .*empty"):
        function([])
    with pytest.raises(TypeError, match=r"weights must be a sequence of \(N, H, L, L\) tensors"):
        function(good)
    with pytest.raises(
        ValueError,
        match=r"weights\[1\] must have the shape of weights\[0\] .* = \(1, 2, 3, 3\); got \(1, 2, 4, 4\)",
    ):
        function([good, torch.full((1, 2, 4, 4), 0.25)])
    with pytest.raises(
        ValueError, match=r"weights\[0\] must be square \(N, H, L, L\); got \(1, 2, 3, 4\)"
    ):
        function([torch.ones(1, 2, 3, 4)])
    with pytest.raises(
        ValueError, match=r"weights\[1\] must have 4 dims \(N, H, L, L\); got shape \(2, 3, 3\)"
    ):
        function([good, torch.ones(2, 3, 3)])
    with pytest.raises(
        ValueError, match=r"head_fusion must be one of 'mean', 'max', 'min'; got 'sum'"
    ):
        function([good], head_fusion="sum")
    with pytest.raises(TypeError, match=r"weights\[0\] must be a floating-point tensor"):
        function([torch.ones(1, 1, 2, 2, dtype=torch.long)])
    with pytest.raises(TypeError, match=r"weights\[1\] must have the dtype of weights\[0\]"):
        function([good, good.double()])
