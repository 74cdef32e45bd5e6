"""What the fine-tune benchmarks share: machine facts, real MRPC for both loops, the two contenders, FLOP counts.

Not a benchmark itself. The contenders start from the same pretrained MiniLM with the same seed; model loading
and tokenisation are outside every timed region. A timed region runs from the training call (for the
Trainer: its construction, then `train()`) to the end of the last timed optimizer step.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import platform
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F

from mte import allocator, launch
from mte import batches as batch_mod
from mte import data as data_mod
from mte.hparams import DataHparams, MethodHparams, ModelHparams, RunSpec, TrainHparams
from mte.models import load_model, resolve_model_path
from mte.tasks import TaskSpec
from mte.training import fine_tune
from mte.workspace import load_data

REPO = Path(__file__).resolve().parents[1]
SHARED_GLUE = REPO.parent / "shared" / "data" / "glue"


def default_data_dir() -> Path:
    return Path(os.environ.get(data_mod.DATA_DIR_ENV) or SHARED_GLUE)


def add_common_args(parser) -> None:
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help=f"GLUE folder with MRPC/ (default: ${data_mod.DATA_DIR_ENV} or {SHARED_GLUE})")
    parser.add_argument("--model", default="minilm", help="model id or path (default: the bundled MiniLM)")
    parser.add_argument("--seed", type=int, default=42, help="seed of both loops (the GLUE example's default)")
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="time only the first N optimizer steps of the epoch (reduced run; no dev accuracy)")
    parser.add_argument("--train-limit", type=int, default=None,
                        help="only the first N training examples, for both loops (to check the set-up quickly)")


def quiet_and_threads(threads: int | None) -> None:
    """Library warnings and progress bars off (as `mte` does); the torch thread count if given."""
    import warnings

    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*pin_memory.*no accelerator.*")
    if threads is not None:
        torch.set_num_threads(threads)


def machine_line() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"machine: {cpu_model()}, {cores} usable cores, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads ({torch.backends.cpu.get_cpu_capability()}); "
            f"load average {load}; malloc: {launch.command_allocator()} for `mte` commands (mte.launch), "
            f"{allocator.allocator()} here")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def peak_rss_gb() -> float:
    """This process's peak resident set so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


@dataclass
class Setup:
    """One task's data tokenised once for each contender, and the hyperparameters both share."""

    spec: RunSpec
    task: TaskSpec
    train: batch_mod.TokenizedSplit  # mte's own tokenisation
    dev: batch_mod.TokenizedSplit
    test: batch_mod.TokenizedSplit | None
    pad_id: int
    data_dir: Path

    @property
    def seed(self) -> int:
        return self.spec.seed

    def steps_per_epoch(self) -> int:
        return -(-len(self.train) // self.spec.train.batch_size)


def load_setup(args, task_name: str = "mrpc") -> Setup:
    data_dir = data_mod.resolve_data_dir(args.data_dir)
    data = DataHparams(task=task_name, max_length=args.max_length, train_limit=getattr(args, "train_limit", None))
    spec = RunSpec(data, ModelHparams(args.model),
                   TrainHparams(lr=args.lr, epochs=getattr(args, "epochs", 1), batch_size=args.batch_size),
                   MethodHparams(), seed=args.seed).resolved()
    d = load_data(spec, data_dir)
    return Setup(spec, d.task, d.train, d.dev, d.test, d.pad_id, data_dir)


@dataclass
class Run:
    """One timed fine-tune: `train_s` up to the end of the last timed step (`cpu_s`: this process's CPU time over
    the same span, all threads; steadier than wall time on a busy machine), `total_s` including dev evaluation."""

    name: str
    steps: int
    train_s: float
    cpu_s: float
    total_s: float | None = None
    dev_accuracy: float | None = None


Stamp = tuple[float, float]  # (wall clock, process CPU time)


def stamp() -> Stamp:
    return time.perf_counter(), time.process_time()


def elapsed(start: Stamp, end: Stamp) -> Stamp:
    return end[0] - start[0], end[1] - start[1]


class _Stop(Exception):
    """Raised from the step callback to end a reduced run after its last timed step."""


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(-1) == np.asarray(labels)).mean())


def run_mte(setup: Setup, max_steps: int | None, group_by_length: bool = True, mask=None, reg=None,
            net=None, name: str = "mte", stamps: list[Stamp] | None = None, with_test: bool = False,
            lane_dropout: bool | None = None) -> Run:
    """mte's `fine_tune` (dev logits computed by it at each epoch's end; test logits if `with_test`),
    or its first N steps."""
    hp = dataclasses.replace(setup.spec.train, group_by_length=group_by_length)
    net = net if net is not None else load_model(setup.spec.model, setup.task, setup.seed)
    stamps = stamps if stamps is not None else []

    def on_step(step: int, total: int) -> None:
        stamps.append(stamp())
        if max_steps is not None and step >= max_steps:
            raise _Stop

    start = stamp()
    try:
        result = fine_tune(net, setup.task, setup.train, setup.dev, setup.test if with_test else None, hp,
                           setup.seed, setup.pad_id, mask=mask, reg=reg, on_step=on_step, lane_dropout=lane_dropout)
    except _Stop:
        return Run(name, len(stamps), *elapsed(start, stamps[-1]))
    total = time.perf_counter() - start[0]
    return Run(name, result.steps, *elapsed(start, stamps[-1]), total,
               accuracy(result.dev_logits, setup.dev.labels.numpy()))


# --- transformers.Trainer, configured as the Hugging Face GLUE example (run_glue.py) configures it -------------


@dataclass
class HFData:
    tokenizer: object
    train: object  # datasets.Dataset
    dev: object


def hf_glue_data(setup: Setup) -> HFData:
    """run_glue.py's preprocessing: `datasets` + tokenizer(s1, s2, padding=False, max_length, truncation=True)."""
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(setup.spec.model.model))
    max_length = setup.spec.data.max_length

    def dataset(split: str):
        raw = data_mod.load_split(setup.task, setup.data_dir, split)
        columns = {f"sentence{i + 1}": list(t) for i, t in enumerate(raw.texts)}
        ds = datasets.Dataset.from_dict(columns | {"label": raw.labels.tolist()})
        limit = setup.spec.data.train_limit if split == "train" else None
        if limit is not None and limit < len(ds):
            ds = ds.select(range(limit))
        keys = list(columns)

        def preprocess(examples):
            return tokenizer(*(examples[k] for k in keys), padding=False, max_length=max_length, truncation=True)

        return ds.map(preprocess, batched=True)

    return HFData(tokenizer, dataset("train"), dataset("dev"))


def hf_glue_model(setup: Setup):
    """set_seed, then AutoModelForSequenceClassification.from_pretrained as run_glue.py does (no attention override)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, set_seed

    path = resolve_model_path(setup.spec.model.model)
    set_seed(setup.seed)
    config = AutoConfig.from_pretrained(path, num_labels=setup.task.num_labels, finetuning_task=setup.task.name)
    return AutoModelForSequenceClassification.from_pretrained(path, config=config)


def run_trainer(setup: Setup, hf: HFData, max_steps: int | None, group_by_length: bool = False,
                name: str = "trainer") -> Run:
    """One epoch of transformers.Trainer with run_glue.py's settings; logging, saving, evaluation and tqdm off."""
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    hp = setup.spec.train
    stamps: list[Stamp] = []

    class OnStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(stamp())
            if max_steps is not None and state.global_step >= max_steps:
                control.should_training_stop = True

    model = hf_glue_model(setup)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=hp.batch_size, learning_rate=hp.lr,
            lr_scheduler_type="linear", warmup_steps=0, weight_decay=hp.weight_decay,
            max_grad_norm=hp.max_grad_norm, num_train_epochs=1, seed=setup.seed,
            logging_strategy="no", save_strategy="no", eval_strategy="no", report_to="none", disable_tqdm=True,
            train_sampling_strategy="group_by_length" if group_by_length else "random",
        )
        start = stamp()
        trainer = Trainer(model=model, args=targs, train_dataset=hf.train, processing_class=hf.tokenizer,
                          data_collator=DataCollatorWithPadding(hf.tokenizer), callbacks=[OnStep()])
        trainer.remove_callback(PrinterCallback)  # prints the final metrics once; nothing per step
        trainer.train()
        run = Run(name, len(stamps), *elapsed(start, stamps[-1]))
        if max_steps is None:
            pred = trainer.predict(hf.dev)
            run.total_s = time.perf_counter() - start[0]
            run.dev_accuracy = accuracy(pred.predictions, pred.label_ids)
        attn = model.config._attn_implementation
    del trainer, model
    gc.collect()
    run.name = f"{name} ({attn} attention)" if name == "trainer" else name
    return run


# --- FLOPs and the machine's matmul throughput -------------------------------------------------------------------


def non_embedding_parameters(net: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in net.named_parameters() if "embeddings" not in n)


def training_flops(lengths: np.ndarray, non_embedding: int, layers: int, hidden: int) -> float:
    """6 · non-embedding parameters · real tokens, plus attention: 12 · layers · hidden · L² per sequence of length L
    (QKᵀ and AV, forward 4·L²·hidden, backward twice that). Padding is not counted: it is wasted work."""
    lengths = np.asarray(lengths, dtype=np.float64)
    return 6.0 * non_embedding * lengths.sum() + 12.0 * layers * hidden * (lengths**2).sum()


def timed_lengths(setup: Setup, steps: int | None, group_by_length: bool = True) -> tuple[np.ndarray, int]:
    """Real lengths of the examples in the first `steps` batches of mte's epoch (same seeded order as fine_tune),
    and the padded token count of those batches."""
    order = torch.Generator().manual_seed(setup.seed)
    batches = batch_mod.train_batches(setup.train.lengths, setup.spec.train.batch_size, order, group_by_length)
    batches = batches[:steps] if steps is not None else batches
    lengths = [setup.train.lengths[b].numpy() for b in batches]
    padded = sum(int(x.max()) * len(x) for x in lengths)
    return np.concatenate(lengths), padded


MATMUL_SHAPES = (  # (label, m, k, n): C(m×n) = A(m×k)·B(k×n); 2048 tokens = 32 pairs × 64 tokens
    ("square 2048·2048·2048", 2048, 2048, 2048),
    ("linear 2048 tok, 384→1536", 2048, 384, 1536),
    ("linear 2048 tok, 1536→384", 2048, 1536, 384),
    ("linear 2048 tok, 384→384", 2048, 384, 384),
    ("weight grad 1536×2048·2048×384", 1536, 2048, 384),
)


def matmul_gflops(m: int, k: int, n: int, seconds: float = 0.6) -> float:
    """Best of 3 windows of float32 F.linear (the op nn.Linear runs) at this shape, in GFLOP/s."""
    x, w = torch.randn(m, k), torch.randn(n, k)
    F.linear(x, w)
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while True:
            F.linear(x, w)
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / 3:
                break
        best = max(best, 2.0 * m * k * n * count / elapsed / 1e9)
    return best


def matmul_peak(seconds: float = 0.6) -> dict[str, float]:
    return {label: matmul_gflops(m, k, n, seconds) for label, m, k, n in MATMUL_SHAPES}


def median(xs: list[float]) -> float:
    return float(np.median(np.asarray(xs, dtype=float)))
