"""One fine-tune, readable top to bottom: AdamW (`torch.optim`, fused where PyTorch has the kernel), linear decay
to zero, clipping, masks, L1 regulariser.

Schedule: the factor used at step t of T is (T − t)/T (Hugging Face's linear schedule without warmup),
so it reaches exactly 0 when the last step completes; it restarts in every fine-tune. τ follows it.

On CPU, dropout masks are drawn by `mte.dropout` (16 bits a draw): PyTorch's per-element CPU Bernoulli runs on
one thread off Intel processors, a large share of a step (benchmarks/RESULTS.md).

Masks are enforced without hooks: gradients of pruned weights are zeroed before clipping and the step (so
AdamW's moments for them stay 0), and the weights are multiplied by the mask after the step.
The L1 term τ·Σ|θ ⊙ l| is added as its subgradient τ·l·sign(θ), with no autograd graph over 20M weights.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mte import dropout
from mte.batches import TokenizedSplit, eval_batches, train_batches
from mte.errors import MteError
from mte.hparams import TrainHparams
from mte.masks import Mask
from mte.metrics import task_metrics
from mte.tasks import TaskSpec

EVAL_BATCH_SIZE = {"cpu": 128, "cuda": 512}  # examples per evaluation batch (no gradients: larger on a GPU)
LOSS_WINDOW = 10  # the loss trace keeps the mean train loss of every 10 optimizer steps
FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where torch.optim.AdamW has a fused kernel (one launch for all tensors)
StepCallback = Callable[[int, int], None]


@dataclass
class Regulariser:
    """L1 pull towards zero on prunable weights, weighted per weight by `coefficients` (the l of the paper)."""

    tau: float
    coefficients: dict[str, torch.Tensor]


@dataclass
class FineTuneResult:
    dev_logits: np.ndarray
    test_logits: np.ndarray | None
    epochs: list[dict[str, float]] = field(default_factory=list)  # dev metrics + train loss per epoch
    steps: int = 0
    wall_s: float = 0.0
    lr_trace: list[float] = field(default_factory=list)  # learning rate used at each step
    loss_trace: list[float] = field(default_factory=list)  # mean train loss of each LOSS_WINDOW steps
    ran_on: str = ""  # `ran_on(device)`


def ran_on(device: torch.device) -> str:
    """Where a fine-tune ran, as far as its bits depend on it: the device (and a CPU's thread count: one and two
    threads give logits that differ in their last bits) and torch's version. Not part of any result key."""
    where = (f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda"
             else f"{device.type}, {torch.get_num_threads()} thread(s)")
    return f"{where}, torch {torch.__version__}"


def linear_decay(step: int, total: int) -> float:
    """Multiplier of the peak learning rate (and τ) used at optimizer step `step` of `total`."""
    return max(0.0, (total - step) / total)


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class MaskedAdamW:
    """AdamW whose step adds the L1 subgradient, keeps pruned weights (and their moments) at zero, and clips."""

    def __init__(self, net: nn.Module, hp: TrainHparams, mask: Mask | None = None, reg: Regulariser | None = None,
                 device: torch.device | None = None):
        device = device or next(net.parameters()).device
        params = dict(net.named_parameters())
        self.params = list(net.parameters())
        self.lr, self.max_grad_norm = hp.lr, hp.max_grad_norm
        names = sorted(mask) if mask is not None else []
        self.masked = [params[n] for n in names]
        self.keep = [mask[n].to(device, torch.float32) for n in names] if mask is not None else []
        reg_names = sorted(reg.coefficients) if reg is not None and reg.tau > 0 else []
        self.tau = reg.tau if reg_names else 0.0
        self.reg_params = [params[n] for n in reg_names]
        self.reg_coef = [reg.coefficients[n].to(device, torch.float32) for n in reg_names] if reg_names else []
        self.optimizer = torch.optim.AdamW(self.params, lr=hp.lr, weight_decay=hp.weight_decay,
                                           fused=device.type in FUSED_ADAMW_DEVICES)
        self.apply_mask()

    @torch.no_grad()
    def apply_mask(self) -> None:
        for p, keep in zip(self.masked, self.keep, strict=True):
            p.mul_(keep)

    def zero_grad(self) -> None:
        """Drop the gradients: backward then hands over fresh ones instead of adding into zeroed buffers
        (no fill, no accumulate; same values bit for bit, about 1.4% of a MiniLM step on CPU)."""
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, factor: float) -> float:
        """One update after `loss.backward()`, with lr and τ scaled by `factor`; returns the lr used."""
        with torch.no_grad():
            for p, coef in zip(self.reg_params, self.reg_coef, strict=True):
                p.grad.add_(p.sign().mul_(coef), alpha=self.tau * factor)
            for p, keep in zip(self.masked, self.keep, strict=True):
                p.grad.mul_(keep)
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm, foreach=True)
        lr = self.lr * factor
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        self.apply_mask()
        return lr


def fine_tune(
    net: nn.Module,
    task: TaskSpec,
    train: TokenizedSplit,
    dev: TokenizedSplit,
    test: TokenizedSplit | None,
    hp: TrainHparams,
    seed: int,
    pad_id: int,
    mask: Mask | None = None,
    reg: Regulariser | None = None,
    on_step: StepCallback | None = None,
    device: torch.device | None = None,
    lane_dropout: bool | None = None,
    epoch_eval: bool = False,
    stop_after: int | None = None,
) -> FineTuneResult:
    """Fine-tune `net` in place from its current weights; dev (and test) logits are the final model's.

    Dev is evaluated once, after the last epoch, unless `epoch_eval` asks for it after every epoch (per-epoch
    curves); every epoch records its train loss. `lane_dropout` (default: on CPU) swaps the model's dropout for
    `mte.dropout`'s, in place. `stop_after`: leave the weights as they are after that many optimizer steps
    (the learning rate still decays over the whole fine-tune; nothing is evaluated): a late rewind point.
    """
    assert hp.lr is not None, "resolve the learning rate first"
    device = device or default_device()
    net.to(device)
    if lane_dropout is None:
        lane_dropout = dropout.used_by_default(device)
    if lane_dropout:
        dropout.install(net)
    start = time.perf_counter()
    torch.manual_seed(seed)  # dropout
    order = torch.Generator().manual_seed(seed)  # data order
    update = MaskedAdamW(net, hp, mask, reg, device)
    steps_per_epoch = -(-len(train) // hp.batch_size)
    total = steps_per_epoch * hp.epochs
    result = FineTuneResult(dev_logits=np.empty(0), test_logits=None, ran_on=ran_on(device))
    step = 0
    losses = torch.zeros(total, device=device)  # written without a sync per step, read once an epoch
    for epoch in range(hp.epochs):
        net.train()
        for index in train_batches(train.lengths, hp.batch_size, order, hp.group_by_length):
            batch = to_device(train.batch(index, pad_id), device)
            with autocast(device, hp.precision):
                logits = net(**batch).logits
            loss = _loss(task, logits.float(), to_device({"y": train.labels[index]}, device)["y"])
            update.zero_grad()
            loss.backward()
            result.lr_trace.append(update.step(linear_decay(step, total)))
            losses[step] = loss.detach()
            step += 1
            if on_step is not None:
                on_step(step, total)
            if step == stop_after:
                result.steps = step
                return result
        loss_sum = losses[epoch * steps_per_epoch:step].sum()
        check_finite(net, float(loss_sum), epoch, hp)
        record = {"epoch": epoch + 1, "train_loss": float(loss_sum) / steps_per_epoch}
        if not (epoch_eval or epoch == hp.epochs - 1):
            result.epochs.append(record)
            continue
        result.dev_logits = predict(net, dev, pad_id, device, hp.precision)
        if not np.isfinite(result.dev_logits).all():
            raise Diverged(f"the fine-tune diverged: its dev logits have inf or NaN values after epoch {epoch + 1} "
                           f"(lr {hp.lr:g}); nothing was stored")
        metrics = task_metrics(task, result.dev_logits, dev.labels.numpy())
        result.epochs.append(record | metrics)
    result.test_logits = predict(net, test, pad_id, device, hp.precision) if test is not None else None
    windows = losses.cpu().split(LOSS_WINDOW)
    result.loss_trace = [float(w.mean()) for w in windows]
    result.steps = step
    result.wall_s = time.perf_counter() - start
    return result


class Diverged(MteError):
    """A fine-tune whose loss or weights stopped being finite numbers: it must fail, not be stored."""


def check_finite(net: nn.Module, loss_sum: float, epoch: int, hp: TrainHparams) -> None:
    """Fail loudly if the epoch's loss or any weight is inf or NaN (e.g. a learning rate far too large)."""
    if not math.isfinite(loss_sum):
        raise Diverged(f"the fine-tune diverged: its train loss became {loss_sum} in epoch {epoch + 1} (lr {hp.lr:g}); "
                       "nothing was stored")
    with torch.no_grad():
        bad = next((n for n, p in net.named_parameters() if not torch.isfinite(p).all()), None)
    if bad is not None:
        raise Diverged(f"the fine-tune diverged: weight {bad} has inf or NaN values after epoch {epoch + 1} "
                       f"(lr {hp.lr:g}); nothing was stored")


def _loss(task: TaskSpec, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if task.is_regression:
        return F.mse_loss(logits.squeeze(-1), labels)
    return F.cross_entropy(logits, labels)


@torch.inference_mode()
def predict(net: nn.Module, split: TokenizedSplit, pad_id: int, device: torch.device, precision: str = "fp32"
            ) -> np.ndarray:
    """Logits (n, k) in the split's original order, float32."""
    net.eval()
    out = torch.empty((len(split), net.config.num_labels), dtype=torch.float32)
    for index in eval_batches(split.lengths, EVAL_BATCH_SIZE.get(device.type, EVAL_BATCH_SIZE["cpu"])):
        batch = to_device(split.batch(index, pad_id), device)
        with autocast(device, precision):
            out[index] = net(**batch).logits.float().cpu()
    return out.numpy()


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch on the training device: through pinned memory, without waiting, when that is a GPU."""
    if device.type != "cuda":
        return batch
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """The fine-tune's arithmetic: bf16 autocast (on any device), TF32 matmuls (CUDA), or plain fp32."""
    if precision == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
        return
    if precision == "tf32" and device.type == "cuda":
        old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
        return
    yield
