"""receptive_field and layers_to_reach against a breadth-first search written by hand."""

from __future__ import annotations

from collections import deque

import pytest
import torch
from torch import Tensor
from torch.nn.attention.flex_attention import create_mask, or_masks

from attention_book.variants import (
    MaskMod,
    causal,
    fixed,
    global_tokens,
    layers_to_reach,
    receptive_field,
    sliding_window,
    strided,
)


def dense(mask_mod: MaskMod, length: int) -> Tensor:
    return create_mask(mask_mod, 1, 1, length, length, device="cpu")[0, 0]


def random_mask(length: int, seed: int, density: float = 0.15) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(length, length, generator=generator) < density


def hand_layers(mask: Tensor, source: int, target: int) -> int | None:
    """Shortest path from source to target: one layer lets query i read every key j it may."""
    readers: dict[int, list[int]] = {j: [] for j in range(mask.shape[0])}
    for i, j in mask.nonzero().tolist():
        readers[j].append(i)
    distance = {source: 0}
    queue = deque([source])
    while queue:
        position = queue.popleft()
        for reader in readers[position]:
            if reader not in distance:
                distance[reader] = distance[position] + 1
                queue.append(reader)
    return distance.get(target)


def hand_field(mask: Tensor, num_layers: int) -> Tensor:
    """Entry k - 1: True where hand_layers(source=j, target=i) <= k."""
    length = mask.shape[0]
    field = torch.zeros(num_layers, length, length, dtype=torch.bool)
    for j in range(length):
        for i in range(length):
            layers = hand_layers(mask, j, i)
            if layers is not None and layers <= num_layers:
                field[max(layers, 1) - 1 :, i, j] = True
    return field


@pytest.mark.parametrize("length", [1, 5, 7, 13])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_receptive_field_matches_breadth_first_search(length: int, seed: int) -> None:
    mask = random_mask(length, seed)
    field = receptive_field(mask, 4)
    assert field.shape == (4, length, length)
    assert field.dtype == torch.bool
    torch.testing.assert_close(field, hand_field(mask, 4))
    # a position always reaches itself, and what a layer reached stays reached
    assert field.diagonal(dim1=1, dim2=2).all()
    assert (field[:-1] <= field[1:]).all()


@pytest.mark.parametrize("length", [1, 5, 7, 13])
@pytest.mark.parametrize("seed", [0, 3])
def test_layers_to_reach_matches_breadth_first_search(length: int, seed: int) -> None:
    mask = random_mask(length, seed)
    for source in range(length):
        for target in range(length):
            assert layers_to_reach(mask, source, target) == hand_layers(mask, source, target)


def test_patterns_known_distances() -> None:
    assert layers_to_reach(dense(causal(), 16)) == 1
    assert layers_to_reach(dense(causal(), 16), source=-1, target=0) is None
    window = dense(sliding_window(2), 16)
    assert layers_to_reach(window, 0, 15) == 8  # ceil(15 / 2)
    assert layers_to_reach(window, 0, 15) == hand_layers(window, 0, 15)
    field = receptive_field(window, 8)
    assert not field[6, 15, 0]
    assert field[7, 15, 0]
    # a global token relays from anywhere to anywhere in two layers
    local = dense(sliding_window(1, 1), 16)
    with_global = dense(or_masks(sliding_window(1, 1), global_tokens([8])), 16)
    assert layers_to_reach(local, 0, 15) == 15
    assert layers_to_reach(with_global, 0, 15) == 2
    assert layers_to_reach(with_global, 15, 0) == 2
    assert layers_to_reach(with_global, 0, 8) == 1
    assert layers_to_reach(window, 5, 5) == 0


@pytest.mark.parametrize("mask_mod", [strided(4), fixed(4)], ids=["strided", "fixed"])
def test_sparse_transformer_patterns_reach_every_earlier_position_in_two_layers(
    mask_mod: MaskMod,
) -> None:
    length = 16
    field = receptive_field(dense(mask_mod, length), 2)
    causal_pairs = torch.ones(length, length, dtype=torch.bool).tril()
    assert not torch.equal(field[0], causal_pairs)  # one layer is not enough ...
    torch.testing.assert_close(field[1], causal_pairs)  # ... two are


def test_max_layers() -> None:
    window = dense(sliding_window(2), 16)
    assert layers_to_reach(window, 0, 15, max_layers=8) == 8
    assert layers_to_reach(window, 0, 15, max_layers=7) is None
    assert layers_to_reach(window, 3, 3, max_layers=0) == 0
    assert layers_to_reach(window, 0, 1, max_layers=0) is None


def test_inputs_are_not_changed() -> None:
    mask = random_mask(7, 0)
    copy = mask.clone()
    receptive_field(mask, 3)
    layers_to_reach(mask, 0, 6)
    assert torch.equal(mask, copy)


def test_bad_arguments() -> None:
    mask = dense(causal(), 16)
    with pytest.raises(
        TypeError, match=r"^mask must be a boolean tensor .*; got dtype torch.float32$"
    ):
        receptive_field(mask.float(), 2)
    with pytest.raises(ValueError, match=r"^mask must be square \(L, L\); got \(16, 15\)$"):
        receptive_field(mask[:, :15], 2)
    with pytest.raises(ValueError, match=r"^mask must be square \(L, L\); got \(1, 16, 16\)$"):
        layers_to_reach(mask[None])
    with pytest.raises(ValueError, match=r"^num_layers must be at least 1; got 0$"):
        receptive_field(mask, 0)
    with pytest.raises(
        ValueError, match=r"^source must lie in \[-16, 15\] for 16 positions; got 16$"
    ):
        layers_to_reach(mask, source=16)
    with pytest.raises(
        ValueError, match=r"^target must lie in \[-16, 15\] for 16 positions; got -17$"
    ):
        layers_to_reach(mask, target=-17)
    with pytest.raises(TypeError, match=r"^target must be an int; got float$"):
        layers_to_reach(mask, target=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^max_layers must be at least 0; got -1$"):
        layers_to_reach(mask, max_layers=-1)
    with pytest.raises(TypeError, match=r"^mask must be a torch.Tensor; got list$"):
        receptive_field([[True]], 1)  # type: ignore[arg-type]
