"""One fine-tune epoch of MiniLM on real MRPC: mte's loop vs transformers.Trainer, and FLOP/s vs the matmul peak.

Issue 6, targets 1 and 2. In one process, alternating the order every repeat, it times
  mte              mte.training.fine_tune (epochs=1, lr 2e-5 linear to 0, batch 32, its default length grouping)
  trainer          transformers.Trainer as the Hugging Face GLUE example (run_glue.py) sets it up: datasets,
                   tokenised with truncation to max length 128 and no padding, DataCollatorWithPadding,
                   AutoModelForSequenceClassification, TrainingArguments with batch 32, lr 2e-5, linear schedule,
                   warmup 0, weight decay 0, max_grad_norm 1.0, 1 epoch, the same seed, dataloader defaults;
                   logging, saving, evaluation and the progress bar off
  trainer-grouped  the same with train_sampling_strategy="group_by_length" (transformers 5's group_by_length=True)
  mte-ungrouped    (optional) mte without length grouping: the grouping lever measured
  mte-eager        (optional) mte with Hugging Face's eager attention instead of PyTorch's SDPA: that lever
  mte-torch-dropout (optional) mte with PyTorch's own dropout (nn.Dropout, SDPA's attention dropout) instead of
                   mte.dropout's lane masks: that lever
and prints every time, the medians and the median of the per-repeat ratios mte/other. Target 1: mte ≤ 0.67×
trainer; dev accuracy of mte within 1 point of the trainer's (full epoch only).

Target 2: the float32 matmul throughput of this machine is measured in the same run (before and after the
repeats; the best shape and window is the peak), and mte's training FLOP/s (6 · non-embedding parameters · real
tokens + attention, see common.training_flops) is printed as a fraction of it. Target ≥ 50%.

Full size (about an hour on 2 cores):   python benchmarks/bench_finetune.py --repeats 3
Reduced (first N steps of the same epoch for every contender, no dev accuracy):
                                        python benchmarks/bench_finetune.py --max-steps 10 --repeats 1
A reduced run checks the set-up; its ratios are not the targets' (batches differ in length between the loops'
first steps: the Trainer's length-grouped sampler, for one, puts the longest batch first).
"""

from __future__ import annotations

import argparse
import sys
import time

from common import (
    Run,
    add_common_args,
    hf_glue_data,
    load_average,
    load_setup,
    machine_line,
    matmul_peak,
    median,
    non_embedding_parameters,
    quiet_and_threads,
    run_mte,
    run_trainer,
    timed_lengths,
    training_flops,
)

CONTENDERS = ("mte", "trainer", "trainer-grouped", "mte-ungrouped", "mte-eager", "mte-torch-dropout")
TARGET_RATIO, TARGET_FRACTION, TARGET_ACC_POINTS = 0.67, 0.50, 1.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(parser)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contenders", default="mte,trainer,trainer-grouped",
                        help=f"comma-separated, from {', '.join(CONTENDERS)} (mte is always run)")
    parser.add_argument("--matmul-seconds", type=float, default=0.6, help="time spent per matmul shape")
    args = parser.parse_args(argv)
    names = ["mte", *[c for c in args.contenders.split(",") if c and c != "mte"]]
    if unknown := set(names) - set(CONTENDERS):
        parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")

    quiet_and_threads(args.threads)
    print(machine_line(), flush=True)
    t0 = time.perf_counter()
    setup = load_setup(args)
    t_mte_data = time.perf_counter() - t0
    hf = hf_glue_data(setup) if any(n.startswith("trainer") for n in names) else None
    t_hf_data = time.perf_counter() - t0 - t_mte_data
    lengths = setup.train.lengths.numpy()
    steps = setup.steps_per_epoch() if args.max_steps is None else min(args.max_steps, setup.steps_per_epoch())
    timed = "full epoch" if args.max_steps is None else f"first {steps} steps of the epoch (reduced run)"
    print(f"data: {setup.task.name} train {len(lengths)} examples, {lengths.mean():.1f} tokens each on average "
          f"(max length {args.max_length}); tokenised once, untimed: mte {t_mte_data:.1f} s, "
          f"datasets.map {t_hf_data:.1f} s", flush=True)
    if args.train_limit is not None:
        timed += f", only the first {args.train_limit} training examples (a set-up check, not the benchmark)"
    print(f"timed: {timed}, {steps} of {setup.steps_per_epoch()} steps, batch {args.batch_size}, lr {args.lr}, "
          f"seed {args.seed}; contenders {', '.join(names)}; {args.repeats} repeat(s), order alternating", flush=True)

    from mte.models import load_model

    probe = load_model(setup.spec.model, setup.task, setup.seed)
    cfg = probe.config
    non_emb = non_embedding_parameters(probe)
    total_params = sum(p.numel() for p in probe.parameters())
    print(f"model {args.model}: {total_params / 1e6:.1f}M parameters, {non_emb / 1e6:.2f}M outside embeddings, "
          f"{cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}; mte trains with {_training_attention()}",
          flush=True)
    warm_up(probe, setup)
    del probe

    peaks = [matmul_peak(args.matmul_seconds)]
    print_matmul(peaks[0], "before")

    runs: dict[str, list[Run]] = {n: [] for n in names}
    for r in range(args.repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            run = contender(name, setup, hf, args.max_steps)
            runs[name].append(run)
            extra = f", with dev eval {run.total_s:.1f} s, dev accuracy {run.dev_accuracy:.4f}" if run.total_s else ""
            print(f"repeat {r + 1}/{args.repeats}  {run.name:<34} {run.train_s:8.2f} s for {run.steps} steps "
                  f"({run.train_s / run.steps:.3f} s/step, CPU {run.cpu_s:.1f} s){extra}   [load {load_average()}]",
                  flush=True)

    peaks.append(matmul_peak(args.matmul_seconds))
    print_matmul(peaks[1], "after")
    summarise(args, setup, runs, peaks, non_emb, cfg, steps)


def _training_attention() -> str:
    from mte.dropout import used_by_default
    from mte.training import default_device

    if used_by_default(default_device()):
        return "lane dropout and attention 'mte_cpu' (eager math while training, SDPA in evaluation)"
    return "PyTorch dropout and SDPA attention"


def warm_up(net, setup) -> None:
    """One untimed forward and backward, so one-time kernel set-up is not charged to whichever loop runs first."""
    index = setup.train.lengths.argsort()[: setup.spec.train.batch_size]
    net.train()
    net(**setup.train.batch(index, setup.pad_id), labels=setup.train.labels[index]).loss.backward()


def contender(name: str, setup, hf, max_steps: int | None) -> Run:
    if name == "mte":
        return run_mte(setup, max_steps)
    if name == "mte-ungrouped":
        return run_mte(setup, max_steps, group_by_length=False, name=name)
    if name == "mte-eager":
        from mte.models import load_model

        net = load_model(setup.spec.model, setup.task, setup.seed)
        net.set_attn_implementation("eager")
        return run_mte(setup, max_steps, net=net, name=name, lane_dropout=False)
    if name == "mte-torch-dropout":
        return run_mte(setup, max_steps, name=name, lane_dropout=False)
    return run_trainer(setup, hf, max_steps, group_by_length=name == "trainer-grouped", name=name)


def print_matmul(peak: dict[str, float], when: str) -> None:
    shapes = "; ".join(f"{k} {v:.1f}" for k, v in peak.items())
    print(f"float32 matmul GFLOP/s ({when} the repeats): {shapes}", flush=True)


def summarise(args, setup, runs: dict[str, list[Run]], peaks: list[dict[str, float]], non_emb: int, cfg,
              steps: int) -> None:
    print("\nsummary (medians over repeats)")
    for rs in runs.values():
        print(f"  {rs[0].name:<34} {median([r.train_s for r in rs]):8.2f} s   "
              f"runs: {', '.join(f'{r.train_s:.2f}' for r in rs)}; CPU {median([r.cpu_s for r in rs]):.1f} s")
    ours = runs["mte"]
    for name, rs in runs.items():
        if name == "mte":
            continue
        ratio = median([a.train_s / b.train_s for a, b in zip(ours, rs, strict=True)])
        cpu = median([a.cpu_s / b.cpu_s for a, b in zip(ours, rs, strict=True)])
        if name == "trainer":
            verdict = f"target ≤ {TARGET_RATIO:.2f}: {'met' if ratio <= TARGET_RATIO else 'MISSED'}"
        elif name == "mte-ungrouped":
            verdict = "the length-grouping lever (mte grouped / ungrouped)"
        elif name == "mte-eager":
            verdict = "the attention lever (mte / eager attention with torch dropout)"
        elif name == "mte-torch-dropout":
            verdict = "the dropout lever (mte lane dropout / torch dropout)"
        else:
            verdict = "reported, no target"
        print(f"  ratio mte / {name:<18} {ratio:.3f}× wall ({verdict}); {cpu:.3f}× CPU time")

    if args.max_steps is None:
        accs = {name: median([r.dev_accuracy for r in rs]) for name, rs in runs.items()}
        line = ", ".join(f"{n} {a:.4f}" for n, a in accs.items())
        print(f"  dev accuracy (median): {line}")
        if "trainer" in accs:
            gap = 100 * (accs["mte"] - accs["trainer"])
            ok = abs(gap) <= TARGET_ACC_POINTS
            print(f"  dev accuracy mte − trainer: {gap:+.2f} points (target within ±{TARGET_ACC_POINTS:.0f}: "
                  f"{'met' if ok else 'MISSED'})")
    else:
        print("  dev accuracy: not measured in a reduced run (--max-steps)")

    lengths, padded = timed_lengths(setup, steps)
    flops = training_flops(lengths, non_emb, cfg.num_hidden_layers, cfg.hidden_size)
    best = {k: max(p[k] for p in peaks) for k in peaks[0]}
    peak_label = max(best, key=best.get)
    peak = best[peak_label]
    shaped = max(v for k, v in best.items() if not k.startswith("square"))
    rate = flops / median([r.train_s for r in ours]) / 1e9
    print(f"  mte training work: {lengths.sum():,} real tokens in {len(lengths)} examples "
          f"({lengths.sum() / padded:.1%} of the {padded:,} padded tokens computed), {flops / 1e12:.3f} TFLOP")
    print(f"  mte training rate: {rate:.1f} GFLOP/s = {rate / peak:.1%} of the float32 matmul peak "
          f"{peak:.1f} GFLOP/s ({peak_label}); {rate / shaped:.1%} of the best transformer-shaped matmul "
          f"(target ≥ {TARGET_FRACTION:.0%} of the peak: {'met' if rate / peak >= TARGET_FRACTION else 'MISSED'})")
    print(f"  load average at the end: {load_average()}")


if __name__ == "__main__":
    main(sys.argv[1:])
