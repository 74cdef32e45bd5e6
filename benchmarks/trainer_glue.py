"""One whole process that fine-tunes as the Hugging Face GLUE example (run_glue.py) does: `datasets` tokenisation
without padding, DataCollatorWithPadding, transformers.Trainer (random sampler, linear decay, no warmup), one
evaluation on dev at the end. What `benchmarks/bench_e2e.py` times against `mte run`. Prints `dev accuracy X`."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--model", default="minilm")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    import datasets
    import numpy as np
    from transformers import (
        AutoConfig,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        PrinterCallback,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from mte.data import load_split
    from mte.models import resolve_model_path
    from mte.tasks import get_task

    task = get_task("mrpc")
    path = resolve_model_path(a.model)
    tokenizer = AutoTokenizer.from_pretrained(path)

    def dataset(split: str, limit: int | None):
        raw = load_split(task, a.data_dir, split)  # the GLUE TSV file, as run_glue.py's csv loader would read it
        ds = datasets.Dataset.from_dict({"sentence1": list(raw.texts[0]), "sentence2": list(raw.texts[1]),
                                         "label": raw.labels.tolist()})
        if limit is not None and limit < len(ds):
            ds = ds.select(range(limit))
        return ds.map(lambda b: tokenizer(b["sentence1"], b["sentence2"], padding=False, max_length=a.max_length,
                                          truncation=True), batched=True)

    train, dev = dataset("train", a.train_limit), dataset("dev", None)
    set_seed(a.seed)
    config = AutoConfig.from_pretrained(path, num_labels=task.num_labels, finetuning_task=task.name)
    model = AutoModelForSequenceClassification.from_pretrained(path, config=config)
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, per_device_train_batch_size=a.batch_size, learning_rate=a.lr,
                                 lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
                                 num_train_epochs=a.epochs, seed=a.seed, logging_strategy="no", save_strategy="no",
                                 eval_strategy="no", report_to="none", disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                          data_collator=DataCollatorWithPadding(tokenizer))
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        pred = trainer.predict(dev)
    print(f"dev accuracy {float((np.argmax(pred.predictions, -1) == pred.label_ids).mean()):.4f}")


if __name__ == "__main__":
    main()
