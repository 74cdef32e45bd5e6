"""Lane dropout's pieces on the CPU: the multiplier as built now (`keep.to(float32).mul_(s)`) against the
`torch.where(keep, s, 0.0)` it replaced (lever 10 in RESULTS.md), alone and inside attention dropout and a
hidden-state dropout, forward and backward. Both in one process, alternating; outputs and gradients must be
bit-equal.

    LD_PRELOAD=libtcmalloc_minimal.so.4 python benchmarks/bench_dropout.py --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch

from mte import dropout


def where_multiplier(keep: torch.Tensor, p: float, dtype: torch.dtype) -> torch.Tensor:
    return torch.where(keep, 1.0 / (1.0 - p), 0.0).to(dtype)


BUILDS = {"current": dropout._multiplier, "where": where_multiplier}


@contextlib.contextmanager
def built_by(name: str) -> Iterator[None]:
    """Lane dropout with the multiplier `BUILDS[name]` inside the block (callers look the name up at call time)."""
    dropout._multiplier = BUILDS[name]
    try:
        yield
    finally:
        dropout._multiplier = BUILDS["current"]


def timed(fn: Callable[[], object], rounds: int, calls: int) -> dict[str, float]:
    """Median ms per call of `fn` under each multiplier, rounds alternating which goes first."""
    times: dict[str, list[float]] = {name: [] for name in BUILDS}
    for r in range(rounds):
        for name in list(BUILDS) if r % 2 == 0 else list(BUILDS)[::-1]:
            with built_by(name):
                fn()  # warm
                start = time.perf_counter()
                for _ in range(calls):
                    fn()
                times[name].append((time.perf_counter() - start) / calls * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def outputs(fn: Callable[[], tuple[torch.Tensor, ...]]) -> bool:
    """Whether `fn`'s outputs are bit-equal under both multipliers."""
    results = []
    for name in BUILDS:
        with built_by(name):
            results.append(fn())
    return all(torch.equal(a.view(torch.int32), b.view(torch.int32)) for a, b in zip(*results, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--length", type=int, default=70, help="tokens per example (MRPC's batches: about 40-100)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--calls", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    b, h, n, d = a.batch, 12, a.length, 32
    scores = torch.randn(b, h, n, n, generator=g, requires_grad=True)
    value = torch.randn(b, h, n, d, generator=g, requires_grad=True)
    hidden = torch.randn(b, n, h * d, generator=g, requires_grad=True)
    grad_out, grad_hidden = torch.randn(b, h, n, d, generator=g), torch.randn(b, n, h * d, generator=g)
    keep = torch.rand(b, h, n, n, generator=g) >= 0.1

    def attention() -> tuple[torch.Tensor, ...]:
        torch.manual_seed(1)
        out = dropout.attention_probs_dropout(scores, value, 0.1)
        return out, *torch.autograd.grad(out, (scores, value), grad_out)

    def hidden_dropout() -> tuple[torch.Tensor, ...]:
        torch.manual_seed(1)
        out = dropout.lane_dropout(hidden, 0.1)
        return out, *torch.autograd.grad(out, (hidden,), grad_hidden)

    print(f"torch {torch.__version__}, {a.threads} thread(s); batch {b}, {n} tokens, 12 heads; median ms per call "
          f"of {a.rounds} alternating rounds of {a.calls}")
    cases = [(f"multiplier of a {tuple(keep.shape)} mask", lambda: (dropout._multiplier(keep, 0.1, torch.float32),)),
             (f"attention dropout, forward and backward, {tuple(scores.shape)}", attention),
             (f"hidden dropout, forward and backward, {tuple(hidden.shape)}", hidden_dropout)]
    for label, fn in cases:
        t = timed(fn, a.rounds, a.calls)
        print(f"  {label}: {t['current']:.2f} ms (now) vs {t['where']:.2f} ms (torch.where): "
              f"{t['current'] / t['where']:.3f}×; bit-equal: {outputs(fn)}")


if __name__ == "__main__":
    main()
