"""Pieces shared by finetune, evaluate, predict and pretrain: devices, tokenised datasets, the Trainer
callback that turns logging steps into metric lines, and checkpoint discovery for --resume."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from train_entry import distributed
from train_entry.reporting import emit_metrics_line


def device_settings() -> dict[str, Any]:
    """bf16 and TF32 on a GPU that has them, fp32 on the CPU."""
    if torch.cuda.is_available():
        return {"bf16": torch.cuda.is_bf16_supported(), "tf32": True, "device": torch.cuda.get_device_name(0)}
    return {"bf16": False, "tf32": False, "device": "cpu"}


def describe_processes(settings: dict[str, Any]) -> str:
    """Where the model runs, for the model line: 'on cpu', 'on NVIDIA H100 x 8 processes on 2 nodes'."""
    where = f"on {settings['device']}"
    if distributed.world_size() > 1:
        where += f" x {distributed.world_size()} processes"
        if distributed.nodes() > 1:
            where += f" on {distributed.nodes()} nodes"
    return where


class EncodedDataset(torch.utils.data.Dataset):
    """Tokenised lazily-padded examples: the collator pads each batch to its own longest line."""

    def __init__(self, encodings: dict[str, list], labels: list[int] | None = None) -> None:
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.encodings["input_ids"])

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = self.labels[index]
        return item


def encode(tokenizer, texts: list[str], max_length: int, labels: list[int] | None = None) -> EncodedDataset:
    encodings = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    return EncodedDataset(dict(encodings), labels)


class MetricLines(TrainerCallback):
    """One JSON line per logging step / evaluation (step, epoch, loss, learning rate, eval metrics)."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.eval_seconds = 0.0  # evaluations inside train(): taken out of the training throughput

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and isinstance(logs.get("eval_runtime"), int | float):
            self.eval_seconds += logs["eval_runtime"]
        if not logs or not state.is_world_process_zero:  # one line per step, not one per rank
            return
        row: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        for key, value in logs.items():
            if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
                row["lr" if key == "learning_rate" else key] = value
        row["elapsed_s"] = round(time.monotonic() - self.started, 1)
        self.history.append(row)
        emit_metrics_line(row)


def latest_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def batch_plan(args: Any) -> distributed.BatchPlan:
    """--batch-size is the global batch per optimizer step, whatever the number of processes; logged once."""
    plan = distributed.plan_batch(args.batch_size, distributed.world_size(), args.max_device_batch)
    distributed.say(plan.describe())
    return plan


def training_arguments(args: Any, checkpoints: Path, evaluate: bool, eval_batch_size: int, plan: distributed.BatchPlan):
    """The Trainer settings finetune and pretrain share: checkpoints every --save-steps (two kept, for
    --resume), one metric line per --logging-steps, bf16/TF32 only where the GPU has them, no tqdm bars
    (they would flood a job log) and no external reporters. Under torchrun the Trainer wraps the model in
    DistributedDataParallel itself; every BERT parameter takes part in the loss, so DDP is told not to
    search for unused ones (a graph walk per step otherwise)."""
    from transformers import TrainingArguments

    settings = device_settings()
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=plan.per_device,
        gradient_accumulation_steps=plan.accumulation,
        ddp_find_unused_parameters=False,
        # transformers 5 multiplies the loss by the process count when the model takes num_items_in_batch, for
        # losses that divide by a token count gathered over all ranks. BERT's losses are per-batch means, so
        # that doubled the logged loss and the gradient (and so what max_grad_norm clips) with 2 processes.
        average_tokens_across_devices=False,
        per_device_eval_batch_size=eval_batch_size,
        learning_rate=args.lr,
        weight_decay=0.01,
        warmup_steps=args.warmup_ratio,  # transformers 5: a float below 1 is a ratio of all steps
        logging_steps=args.logging_steps,
        eval_strategy="epoch" if evaluate else "no",
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=2,
        seed=args.seed,
        bf16=settings["bf16"],
        tf32=settings["tf32"] or None,
        use_cpu=settings["device"] == "cpu",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
