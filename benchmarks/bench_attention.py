"""Time attention_book against PyTorch's own attention on the CPU and print the ratios.

Run with ``python benchmarks/bench_attention.py`` (or ``nox -s bench``). A ratio is
``attention_book time / PyTorch time`` (median over rounds of alternating ``torch.utils.benchmark`` blocks), so 1.00
means as fast as PyTorch and the fast path aims at 1.05 or less. The thread count is left
as PyTorch sets it. Options: ``--min-run-time SECONDS`` per case (default 2.0).
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.benchmark import Timer

from attention_book import MultiHeadAttention, scaled_dot_product_attention

SHAPES = ((4, 8, 512, 64), (1, 8, 2048, 64))  # (N, H, L, E)


def paired_times(
    ours: Callable[[], object], theirs: Callable[[], object], min_run_time: float
) -> tuple[float, float, float]:
    """Time ``ours`` and ``theirs`` in alternating blocks; return both medians and the ratio.

    Alternating blocks expose both functions to the same drift (frequency scaling, other
    load); the ratio is the median of the per-round ratios, which is robust to outliers.
    """
    ours(), theirs()  # warm up: first-call allocations and kernel selection
    timers = [Timer(stmt="fn()", globals={"fn": fn}) for fn in (ours, theirs)]
    single = max(timers[1].timeit(number=1).median, 1e-6)
    number = max(1, int(0.05 / single))  # about 50 ms per block
    rounds = max(5, int(min_run_time / (2 * number * single)))
    pairs = [
        (timers[0].timeit(number).median, timers[1].timeit(number).median) for _ in range(rounds)
    ]
    ours_median = statistics.median(pair[0] for pair in pairs)
    theirs_median = statistics.median(pair[1] for pair in pairs)
    ratio = statistics.median(a / b for a, b in pairs)
    return ours_median, theirs_median, ratio


def measure(
    shape: tuple[int, int, int, int], min_run_time: float
) -> list[tuple[str, float, float, float]]:
    """Return ``(case, ours, pytorch, ratio)`` for one ``(N, H, L, E)``; times in seconds."""
    n, h, length, e = shape
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(n, h, length, e, generator=generator) for _ in range(3))  # (N, H, L, E)
    x = torch.randn(n, length, h * e, generator=generator)  # (N, L, H * E)
    torch_mha = nn.MultiheadAttention(h * e, h, batch_first=True).eval()
    ours_mha = MultiHeadAttention.from_torch(torch_mha).eval()

    def torch_sdpa() -> Tensor:
        return F.scaled_dot_product_attention(q, k, v)

    def torch_mha_call() -> Tensor:
        output: Tensor = torch_mha(x, x, x, need_weights=False)[0]
        return output

    cases: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
        (
            "sdpa need_weights=False",
            lambda: scaled_dot_product_attention(q, k, v, need_weights=False),
            torch_sdpa,
        ),
        ("sdpa need_weights=True", lambda: scaled_dot_product_attention(q, k, v), torch_sdpa),
        ("MHA need_weights=False", lambda: ours_mha(x, x, x, need_weights=False), torch_mha_call),
        ("MHA need_weights=True", lambda: ours_mha(x, x, x), torch_mha_call),
    ]
    results = []
    with torch.inference_mode():
        for name, ours, theirs in cases:
            results.append((name, *paired_times(ours, theirs, min_run_time)))
    return results


def main() -> None:
    """Print one table with every shape and case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-run-time", type=float, default=2.0)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    header = f"{'(N, H, L, E)':<20} {'case':<26} {'ours ms':>9} {'torch ms':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for shape in SHAPES:
        for name, ours, theirs, ratio in measure(shape, args.min_run_time):
            print(f"{shape!s:<20} {name:<26} {ours * 1e3:9.2f} {theirs * 1e3:9.2f} {ratio:6.2f}")
    print(
        "ratio = attention_book / PyTorch; MHA rows compare with nn.MultiheadAttention(need_weights=False)"
    )


if __name__ == "__main__":
    main()
