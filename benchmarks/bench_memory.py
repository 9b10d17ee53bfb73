"""Peak memory and time of exact, chunked, linear and fused attention against the sequence length.

Run with ``python benchmarks/bench_memory.py`` (``nox -s bench`` runs it after
``bench_attention.py``). Three tables, at ``(N, H, L, E) = (1, 4, L, 64)`` in float32 on the
CPU, each closing with its ratio against the goal:

1. Peak memory of one forward pass for ``L = 1k .. 16k``: the package's materialised path
   (``scaled_dot_product_attention`` with its weights), ``chunked_attention``,
   ``linear_attention`` and PyTorch's fused SDPA. Goal: chunked at most 1/10 of materialised
   at the longest ``L``.
2. A sliding window of 256 keys on each side at ``L = 4k, 8k, 16k``: ``chunked_attention``
   with ``mask_mod=sliding_window(256, 256)`` against SDPA with the same boolean mask. Goal:
   faster, and under 1/10 of SDPA's peak memory, at 16k.
3. Time: chunked against fused SDPA at ``L >= 4k`` (goal: within 2x), and the exponent ``p``
   of ``time ~ L^p`` fitted for linear (goal: about 1), dense and SDPA (about 2).

How memory is measured: each case runs in a fresh process, which runs the same call once on
short inputs (to load kernels and thread pools), creates its inputs (and, for SDPA with a
window, the boolean mask), resets the high-water mark of its resident memory to the current
value (Linux: ``/proc/self/clear_refs``), runs the forward pass under
``torch.inference_mode`` and reports the rise of the mark (``VmHWM``).
glibc's ``MALLOC_MMAP_THRESHOLD_`` is set to 64 KiB in that process so that freed blocks go
back to the system at once: the mark then follows live tensors, not a fragmented heap.
How time is measured: the two functions of a pair alternate for 5 to 10 rounds and the ratio
is the median of the per-round ratios (robust to the drift of a shared machine); a single
function (linear, dense) reports its fastest call. The thread count is PyTorch's default;
the chunked/SDPA ratios are also given on one thread, because a loop of many small
multi-threaded operations loses far more than one fused kernel when another process takes a
core (every operation waits for its slowest thread). Options: ``--min-run-time SECONDS`` per
pair (default 2.0), ``--max-length L`` (default 16384).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from attention_book import scaled_dot_product_attention
from attention_book.variants import chunked_attention, linear_attention, sliding_window

HEADS, FEATURES = 4, 64
WINDOW = 256  # keys on each side of the query
CHUNK_CANDIDATES = ((256, 512), (512, 512), (512, 1024), (1024, 1024), (1024, 2048))
MIB = 2**20


def make_inputs(length: int) -> tuple[Tensor, Tensor, Tensor]:
    """``query, key, value`` of shape ``(1, H, L, E)``, seeded."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 1, HEADS, length, FEATURES, generator=generator).unbind(0)
    return q, k, v


def window_mask(length: int) -> Tensor:
    """The ``(L, L)`` boolean mask of ``sliding_window(WINDOW, WINDOW)``, True = may attend."""
    i = torch.arange(length)[:, None]
    j = torch.arange(length)[None, :]
    return (j - i).abs() <= WINDOW


def attention_call(case: str, length: int, chunks: tuple[int, int]) -> Callable[[], Tensor]:
    """The forward pass of ``case`` on fresh inputs of length ``length``."""
    q, k, v = make_inputs(length)
    qc, kc = chunks
    if case == "materialised":
        return lambda: scaled_dot_product_attention(q, k, v).output
    if case == "chunked":
        return lambda: chunked_attention(q, k, v, query_chunk_size=qc, key_chunk_size=kc)
    if case == "linear":
        return lambda: linear_attention(q, k, v)
    if case == "sdpa":
        return lambda: F.scaled_dot_product_attention(q, k, v)
    if case == "chunked-window":
        mask_mod = sliding_window(WINDOW, WINDOW)
        return lambda: chunked_attention(
            q, k, v, query_chunk_size=qc, key_chunk_size=kc, mask_mod=mask_mod
        )
    if case == "sdpa-window":
        mask = window_mask(length)
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    msg = f"unknown case {case!r}"
    raise ValueError(msg)


def high_water_kib() -> int:
    """The high-water mark of this process's resident memory, ``VmHWM``, in KiB.

    Not ``ru_maxrss``: after ``exec`` that never falls below the parent's resident memory.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    msg = "no VmHWM in /proc/self/status"
    raise RuntimeError(msg)


def reset_high_water() -> int:
    """Reset the high-water mark to the current resident memory (Linux); return it in KiB."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return high_water_kib()


def worker(case: str, length: int, chunks: tuple[int, int]) -> None:
    """In a fresh process: print the rise of peak memory (MiB) and the time of one forward."""
    with torch.inference_mode():
        attention_call(case, 2 * WINDOW + 64, chunks)()  # warm up: kernels, thread pools
        call = attention_call(case, length, chunks)
        base = reset_high_water()
        start = time.perf_counter()
        call()
        seconds = time.perf_counter() - start
        peak = high_water_kib()
    print(json.dumps({"mib": (peak - base) / 1024, "seconds": seconds}))


def peak_memory(case: str, length: int, chunks: tuple[int, int]) -> float:
    """Run ``case`` in a fresh process and return its peak memory above its inputs, in MiB."""
    command = [sys.executable, __file__, "--worker", case, str(length), *map(str, chunks)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        msg = f"{case} at L = {length} failed:\n{result.stderr}"
        raise RuntimeError(msg)
    mib: float = json.loads(result.stdout.strip().splitlines()[-1])["mib"]
    return mib


def available_mib() -> float:
    """Memory the system can still hand out (``MemAvailable``), in MiB."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return math.inf  # pragma: no cover - not Linux


def scores_mib(length: int) -> float:
    """Size of one float32 ``(1, H, L, L)`` tensor of scores, in MiB."""
    return HEADS * length * length * 4 / MIB


def paired(
    first: Callable[[], object], second: Callable[[], object], min_run_time: float
) -> tuple[float, float, float]:
    """Median seconds of ``first`` and ``second`` timed in alternation, and the median ratio."""
    first(), second()  # warm up
    start = time.perf_counter()
    second()
    single = max(time.perf_counter() - start, 1e-6)
    number = max(1, int(0.05 / single))  # calls per timing, about 50 ms at least
    rounds = min(10, max(5, int(min_run_time / (2 * number * single))))
    pairs = []
    for _ in range(rounds):
        times = []
        for fn in (first, second):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            times.append((time.perf_counter() - start) / number)
        pairs.append((times[0], times[1]))
    return (
        statistics.median(p[0] for p in pairs),
        statistics.median(p[1] for p in pairs),
        statistics.median(p[0] / p[1] for p in pairs),
    )


def single_time(fn: Callable[[], object], min_run_time: float) -> float:
    """Fastest seconds of ``fn`` over a few calls (at least 3, about ``min_run_time`` in all).

    The fastest call is the one another process disturbed least: on a shared machine it
    tracks the work better than the median does.
    """
    fn()  # warm up
    times: list[float] = []
    while len(times) < 3 or (sum(times) < min_run_time and len(times) < 20):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def exponent(lengths: list[int], seconds: list[float]) -> float:
    """The slope ``p`` of the least-squares line through ``log(seconds)`` against ``log(L)``."""
    x = [math.log(length) for length in lengths]
    y = [math.log(s) for s in seconds]
    mx, my = statistics.fmean(x), statistics.fmean(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / sum(
        (a - mx) ** 2 for a in x
    )


def timed_pair(
    first: str,
    second: str,
    length: int,
    chunks: tuple[int, int],
    min_run_time: float,
    *,
    threads: int | None = None,
) -> tuple[float, float, float]:
    """``paired`` times of two cases at ``length``, on ``threads`` threads (PyTorch's default)."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        with torch.inference_mode():
            calls = (attention_call(first, length, chunks), attention_call(second, length, chunks))
            return paired(*calls, min_run_time)
    finally:
        torch.set_num_threads(default)


def pick_chunks(min_run_time: float) -> tuple[int, int]:
    """Time chunked_attention against SDPA at L = 4096 for each candidate; return the best."""
    threads = torch.get_num_threads()
    print(f"Chunk sizes at L = 4096: time of chunked_attention / fused SDPA on {threads} "
          "thread(s) and on 1")  # fmt: skip
    best, best_ratio = CHUNK_CANDIDATES[0], math.inf
    for chunks in CHUNK_CANDIDATES:
        ratio = timed_pair("chunked", "sdpa", 4096, chunks, min_run_time / 2)[2]
        ratio_1 = timed_pair("chunked", "sdpa", 4096, chunks, min_run_time / 2, threads=1)[2]
        block = HEADS * chunks[0] * chunks[1] * 4 / MIB
        print(f"  query_chunk_size={chunks[0]:<5} key_chunk_size={chunks[1]:<5} "
              f"block {block:5.1f} MiB   ratio {ratio:5.2f}   1 thread {ratio_1:5.2f}")  # fmt: skip
        if max(ratio, ratio_1) < best_ratio:
            best, best_ratio = chunks, max(ratio, ratio_1)
    print(f"  -> {best}: the smallest worse-of-the-two ratio")
    return best


def memory_table(lengths: list[int], chunks: tuple[int, int]) -> None:
    """Table 1: peak memory of one forward pass per variant, and the chunked/materialised ratio."""
    print("\nTable 1. Peak memory of one forward pass, MiB above the inputs, (1, 4, L, 64) float32")
    cases = ("materialised", "chunked", "linear", "sdpa")
    print(
        f"{'L':>6} {'scores':>7} " + " ".join(f"{c:>12}" for c in cases) + f" {'chunked/mat':>11}"
    )
    results: dict[tuple[str, int], float] = {}
    for length in lengths:
        row = []
        for case in cases:
            # the materialised path holds the scores and the weights: skip it if they won't fit
            if case == "materialised" and 3 * scores_mib(length) > 0.8 * available_mib():
                row.append(f"{'skipped':>12}")
                continue
            results[case, length] = peak_memory(case, length, chunks)
            row.append(f"{results[case, length]:12.1f}")
        shown = ""
        if ("materialised", length) in results:
            shown = f"{results['chunked', length] / results['materialised', length]:.4f}"
        print(f"{length:>6} {scores_mib(length):7.0f} " + " ".join(row) + f" {shown:>11}")
    print("scores = the size of one (1, 4, L, L) float32 tensor, MiB")
    longest = lengths[-1]
    measured = max(n for (case, n) in results if case == "materialised")
    materialised = results["materialised", measured] * (longest / measured) ** 2
    note = "" if measured == longest else f" (materialised extrapolated from L = {measured} as L^2)"
    ratio = results["chunked", longest] / materialised
    verdict = "met" if ratio <= 0.1 else "NOT met"
    print(f"Goal: chunked <= 1/10 of materialised at L = {longest}: "
          f"ratio {ratio:.4f}{note} -> {verdict}")  # fmt: skip


def window_table(lengths: list[int], chunks: tuple[int, int], min_run_time: float) -> None:
    """Table 2: sliding window, chunked_attention(mask_mod) against SDPA with the boolean mask."""
    threads = torch.get_num_threads()
    print(f"\nTable 2. Sliding window, {WINDOW} keys each side: chunked_attention(mask_mod=...) "
          "vs SDPA(attn_mask=bool mask)")  # fmt: skip
    print(f"{'L':>6} {'sdpa ms':>9} {'chunked ms':>10} {'time':>6} {'1 thread':>8} "
          f"{'sdpa MiB':>9} {'chunked MiB':>11} {'memory':>7} {'mask MiB':>9}")  # fmt: skip
    time_ratio = time_ratio_1 = memory_ratio = math.nan
    for length in lengths:
        pair = ("chunked-window", "sdpa-window", length, chunks, min_run_time)
        chunked, sdpa, time_ratio = timed_pair(*pair)
        time_ratio_1 = timed_pair(*pair, threads=1)[2]
        sdpa_mib = peak_memory("sdpa-window", length, chunks)
        chunked_mib = peak_memory("chunked-window", length, chunks)
        memory_ratio = chunked_mib / sdpa_mib
        print(f"{length:>6} {sdpa * 1e3:9.1f} {chunked * 1e3:10.1f} {time_ratio:6.3f} "
              f"{time_ratio_1:8.3f} {sdpa_mib:9.1f} {chunked_mib:11.1f} {memory_ratio:7.4f} "
              f"{length * length / MIB:9.0f}")  # fmt: skip
    print(f"times on {threads} thread(s), chunk sizes {chunks}; time and memory: chunked / SDPA, "
          "time also on 1 thread; SDPA's memory leaves out the boolean (L, L) mask it is given "
          "(last column), built before the measurement")  # fmt: skip
    verdict = "met" if max(time_ratio, time_ratio_1) < 1 and memory_ratio < 0.1 else "NOT met"
    print(f"Goal at L = {lengths[-1]}: time ratio < 1 and memory ratio < 0.1: "
          f"{time_ratio:.3f} ({time_ratio_1:.3f} on 1 thread) and {memory_ratio:.4f} "
          f"-> {verdict}")  # fmt: skip


def time_table(lengths: list[int], chunks: tuple[int, int], min_run_time: float) -> None:
    """Table 3: chunked against fused SDPA, and the growth of linear, dense and SDPA with L."""
    threads = torch.get_num_threads()
    print("\nTable 3. Time of one forward pass, ms, (1, 4, L, 64) float32")
    print(f"{'L':>6} {'sdpa':>9} {'chunked':>9} {'ratio':>6} {'1 thread':>8} "
          f"{'linear':>9} {'dense':>9}")  # fmt: skip
    seconds: dict[str, list[float]] = {"sdpa": [], "linear": [], "materialised": []}
    worst = {threads: 0.0, 1: 0.0}
    for length in lengths:
        chunked, sdpa, ratio = timed_pair("chunked", "sdpa", length, chunks, min_run_time)
        ratio_1 = timed_pair("chunked", "sdpa", length, chunks, min_run_time, threads=1)[2]
        seconds["sdpa"].append(sdpa)
        with torch.inference_mode():
            seconds["linear"].append(
                single_time(attention_call("linear", length, chunks), min_run_time / 2)
            )
            dense = math.nan
            if length <= 8192 and 3 * scores_mib(length) < 0.5 * available_mib():
                dense = single_time(
                    attention_call("materialised", length, chunks), min_run_time / 2
                )
                seconds["materialised"].append(dense)
        if length >= 4096:
            worst[threads], worst[1] = max(worst[threads], ratio), max(worst[1], ratio_1)
        print(f"{length:>6} {sdpa * 1e3:9.1f} {chunked * 1e3:9.1f} {ratio:6.2f} {ratio_1:8.2f} "
              f"{seconds['linear'][-1] * 1e3:9.1f} {dense * 1e3:9.1f}")  # fmt: skip
    print(f"times on {threads} thread(s), chunk sizes {chunks}; ratio = chunked / SDPA (median "
          "of alternating rounds), also on 1 thread; dense = the package's path with weights, "
          "up to L = 8192")  # fmt: skip
    for count, value in worst.items():
        verdict = "met" if value <= 2 else "NOT met"
        print(f"Goal: chunked within 2x of fused SDPA at L >= 4096 on {count} thread(s): "
              f"worst ratio {value:.2f} -> {verdict}")  # fmt: skip
    for name, goal in (("linear", 1), ("materialised", 2), ("sdpa", 2)):
        measured = lengths[: len(seconds[name])]
        if len(measured) >= 2:
            p = exponent(measured, seconds[name])
            print(f"Fitted exponent, time ~ L^p, {name:<12} over L = {measured[0]}..{measured[-1]}: "
                  f"p = {p:.2f} (expected about {goal})")  # fmt: skip


def main() -> None:
    """Print the three tables (or, with ``--worker``, measure one case in this process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-run-time", type=float, default=2.0)
    parser.add_argument("--max-length", type=int, default=16384)
    parser.add_argument("--worker", nargs=4, metavar=("CASE", "L", "QC", "KC"))
    args = parser.parse_args()
    if args.worker:
        case, length, qc, kc = args.worker
        worker(case, int(length), (int(qc), int(kc)))
        return
    lengths = [n for n in (1024, 2048, 4096, 8192, 16384) if n <= args.max_length]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, "
          f"{available_mib() / 1024:.1f} GiB available")  # fmt: skip
    chunks = pick_chunks(args.min_run_time)
    memory_table(lengths, chunks)
    if lengths[-1] >= 4096:
        window_table([n for n in lengths if n >= 4096], chunks, args.min_run_time)
    time_table(lengths, chunks, args.min_run_time)


if __name__ == "__main__":
    main()
