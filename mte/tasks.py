"""GLUE task descriptions: where each task's columns live, its labels and its metrics.

One table drives the TSV reader, the hub loader, the model head and the metrics, so adding a task
is one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from mte.errors import MteError


@dataclass(frozen=True)
class TaskSpec:
    name: str  # canonical lower-case name, e.g. "sts-b"
    folder: str  # GLUE folder name, e.g. "STS-B"
    hub_name: str  # `datasets.load_dataset("glue", hub_name)`
    text_columns: tuple[str, ...]  # hub column names; TSV columns are mapped onto them
    tsv_text_columns: tuple[str | int, ...]  # TSV header names (or positions where there is no header)
    tsv_label_column: str | int
    labels: tuple[str, ...] | None  # label strings in hub id order; None = regression
    metrics: tuple[str, ...]  # first one is the headline metric
    dev_split: str = "dev"
    test_split: str = "test"
    has_header: bool = True  # CoLA's train/dev files have none

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("mrpc", "MRPC", "mrpc", ("sentence1", "sentence2"), ("#1 String", "#2 String"), "Quality",
                 ("0", "1"), ("accuracy", "f1")),
        TaskSpec("sts-b", "STS-B", "stsb", ("sentence1", "sentence2"), ("sentence1", "sentence2"), "score",
                 None, ("pearson", "spearman")),
        TaskSpec("cola", "CoLA", "cola", ("sentence",), (3,), 1, ("0", "1"), ("matthews", "accuracy"),
                 has_header=False),
        TaskSpec("sst-2", "SST-2", "sst2", ("sentence",), ("sentence",), "label", ("0", "1"), ("accuracy",)),
        TaskSpec("qnli", "QNLI", "qnli", ("question", "sentence"), ("question", "sentence"), "label",
                 ("entailment", "not_entailment"), ("accuracy",)),
        TaskSpec("rte", "RTE", "rte", ("sentence1", "sentence2"), ("sentence1", "sentence2"), "label",
                 ("entailment", "not_entailment"), ("accuracy",)),
        TaskSpec("qqp", "QQP", "qqp", ("question1", "question2"), ("question1", "question2"), "is_duplicate",
                 ("0", "1"), ("accuracy", "f1")),
        TaskSpec("mnli", "MNLI", "mnli", ("premise", "hypothesis"), ("sentence1", "sentence2"), "gold_label",
                 ("entailment", "neutral", "contradiction"), ("accuracy",),
                 dev_split="dev_matched", test_split="test_matched"),
    ]
}

_ALIASES = {"stsb": "sts-b", "sst2": "sst-2", "mnli-m": "mnli", "mnli_matched": "mnli"}


def get_task(name: str) -> TaskSpec:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in TASKS:
        raise MteError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[key]
