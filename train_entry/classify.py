"""finetune, evaluate and predict: sequence classification on TNEWS-style data."""

from __future__ import annotations

import json
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from train_entry import distributed
from train_entry.common import (
    MetricLines,
    batch_plan,
    describe_processes,
    device_settings,
    encode,
    latest_checkpoint,
    training_arguments,
)
from train_entry.data import (
    DataError,
    Dataset,
    LabelSet,
    dedupe_against,
    find_labels,
    find_split,
    labels_from_data,
    load_dataset,
    load_labels,
)
from train_entry.modeling import count_parameters, init_model, load_tokenizer, save_tokenizer
from train_entry.reporting import (
    classification_metrics,
    emit_metrics_line,
    plot_confusion_matrix,
    plot_curves,
    write_json,
)

LABELS_FILE = "jobsub_labels.json"
SUBMISSION_FILE = "tnews_predict.json"


def _split_path(args: Namespace, split: str) -> Path | None:
    explicit = getattr(args, split, None)
    if explicit:
        return Path(explicit)
    return find_split(Path(args.data), split) if args.data else None


def _label_set(args: Namespace, train_path: Path | None) -> LabelSet:
    if args.labels:
        return load_labels(Path(args.labels))
    folder = Path(args.data) if args.data else (train_path.parent if train_path else None)
    found = find_labels(folder) if folder else None
    if found:
        return load_labels(found)
    if train_path is None:
        raise DataError("no labels file (labels.json / label_index2en2zh.json) and no training data to infer them")
    return labels_from_data([train_path], args.label_field, args.text_field)


def _load(args: Namespace, path: Path, labels: LabelSet) -> Dataset:
    return load_dataset(path, labels, args.text_field, args.label_field, args.keywords)


def predict_labels(model, tokenizer, dataset: Dataset, args: Namespace) -> np.ndarray:
    """Predicted class indices, in the dataset's order."""
    texts = [e.text for e in dataset.examples]
    return predict_logits(model, tokenizer, texts, args.max_length, args.eval_batch_size).argmax(axis=1)


def predict_logits(model, tokenizer, texts: list[str], max_length: int, batch_size: int) -> np.ndarray:
    """Batched inference, longest-first buckets for speed, results in input order. With several processes
    each takes every n-th line of the length order (so all get similar lengths) and every rank receives
    the whole result: it is a collective, every rank must call it."""
    from transformers import DataCollatorWithPadding

    model.eval()
    device = next(model.parameters()).device
    collator = DataCollatorWithPadding(tokenizer)
    encoded = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    order = sorted(range(len(texts)), key=lambda i: len(encoded["input_ids"][i]))
    mine = order[distributed.rank() :: distributed.world_size()]
    logits = np.zeros((len(mine), model.config.num_labels), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            idx = mine[start : start + batch_size]
            batch = collator([{k: encoded[k][i] for k in encoded} for i in idx])
            batch = {k: v.to(device) for k, v in batch.items()}
            logits[start : start + len(idx)] = model(**batch).logits.float().cpu().numpy()
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    for indices, part in distributed.gather((mine, logits)):
        out[indices] = part
    return out


def _write_predictions(path: Path, dataset: Dataset, predictions: np.ndarray, labels: LabelSet) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for example, pred in zip(dataset.examples, predictions, strict=True):
            row: dict[str, Any] = {
                "id": example.id,
                "sentence": example.text,
                "pred": labels.ids[int(pred)],
                "pred_desc": labels.display(int(pred)),
            }
            if example.label is not None:
                row["label"] = labels.ids[example.label]
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_submission(path: Path, dataset: Dataset, predictions: np.ndarray, labels: LabelSet) -> None:
    """CLUE's TNEWS submission format: one {"id", "label", "label_desc"} line per test line, in order."""
    with path.open("w", encoding="utf-8") as handle:
        for number, (example, pred) in enumerate(zip(dataset.examples, predictions, strict=True)):
            ident: Any = int(example.id) if example.id and example.id.isdigit() else (example.id or number)
            row = {"id": ident, "label": labels.ids[int(pred)], "label_desc": labels.display(int(pred))}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def evaluate_dataset(
    model, tokenizer, dataset: Dataset, labels: LabelSet, args: Namespace, output: Path, name: str
) -> dict[str, Any]:
    started = time.monotonic()
    predictions = predict_labels(model, tokenizer, dataset, args)
    metrics = classification_metrics([e.label for e in dataset.examples], predictions.tolist(), labels)
    metrics["eval_file"] = str(dataset.path)
    metrics["eval_examples"] = len(dataset.examples)
    metrics["eval_seconds"] = round(time.monotonic() - started, 2)
    if not distributed.is_main():
        return metrics
    _write_predictions(output / "predictions.jsonl", dataset, predictions, labels)
    write_json(output / "confusion_matrix.json", {"labels": metrics["labels"], "matrix": metrics["confusion_matrix"]})
    plot_confusion_matrix(
        metrics["confusion_matrix"],
        labels,
        output / "confusion_matrix.png",
        f"{name}: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}",
    )
    return metrics


def _load_classifier(folder: Path, labels: LabelSet | None):
    from transformers import BertForSequenceClassification

    if not (folder / "config.json").is_file():
        raise DataError(f"--model {folder}: not a model folder (no config.json); make one with `train_entry init`")
    kwargs: dict[str, Any] = {}
    if labels is not None:
        kwargs = {
            "num_labels": len(labels.ids),
            "id2label": dict(enumerate(labels.ids)),
            "label2id": {label: i for i, label in enumerate(labels.ids)},
        }
    return BertForSequenceClassification.from_pretrained(str(folder), **kwargs)


def _load_for_inference(folder: Path):
    """(tokenizer, fine-tuned model), the model on this process's GPU when there is one."""
    model = _load_classifier(folder, None)
    return load_tokenizer(folder), model.to(distributed.device())


def finetune(args: Namespace) -> dict[str, Any]:
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, set_seed

    set_seed(args.seed)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    train_path = _split_path(args, "train")
    if train_path is None:
        raise DataError(f"no training file: pass --train FILE or --data DIR holding train.json (got {args.data})")
    labels = _label_set(args, train_path)
    train = _load(args, train_path, labels)
    dev_path, test_path = _split_path(args, "dev"), _split_path(args, "test")
    dev = _load(args, dev_path, labels) if dev_path else None
    test = _load(args, test_path, labels) if test_path else None
    held_out = [d for d in (dev, test) if d is not None and d.labelled]
    dropped = dedupe_against(train, held_out)
    distributed.say(
        f"data: {len(train.examples)} training lines ({dropped} dropped: also in the evaluation set), "
        f"{len(dev.examples) if dev else 0} dev, {len(test.examples) if test else 0} test, "
        f"{len(labels.ids)} classes"
    )

    if args.model:
        model_dir = Path(args.model)
    else:
        if not args.vocab:
            raise DataError("pass --model DIR (a model folder) or --vocab vocab.txt --preset NAME (a new model)")
        model_dir = output / "init"
        if distributed.is_main():  # one writer; the other ranks read the folder once it is complete
            init_model(Path(args.vocab), args.preset, model_dir, seed=args.seed)
        distributed.barrier()
    tokenizer = load_tokenizer(model_dir)
    model = _load_classifier(model_dir, labels)
    settings = device_settings()
    distributed.say(
        f"model: {model_dir} ({count_parameters(model) / 1e6:.1f}M parameters) {describe_processes(settings)}"
        f"{' with bf16 + TF32' if settings['bf16'] else ''}"
    )

    train_set = encode(tokenizer, [e.text for e in train.examples], args.max_length, [e.label for e in train.examples])
    eval_data = dev if dev is not None and dev.labelled else None
    eval_set = (
        encode(tokenizer, [e.text for e in eval_data.examples], args.max_length, [e.label for e in eval_data.examples])
        if eval_data
        else None
    )

    def compute_metrics(prediction) -> dict[str, float]:
        preds = prediction.predictions.argmax(axis=1)
        result = classification_metrics(prediction.label_ids.tolist(), preds.tolist(), labels)
        return {"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]}

    checkpoints = output / "checkpoints"
    plan = batch_plan(args)
    training_args = training_arguments(args, checkpoints, eval_set is not None, args.eval_batch_size, plan)
    lines = MetricLines()
    meter = distributed.ThroughputMeter(model)
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics if eval_set is not None else None,
        callbacks=[lines],
    )
    trainer.remove_callback(PrinterCallback)  # MetricLines prints one JSON line per step instead
    resume = latest_checkpoint(checkpoints) if args.resume else None
    if args.resume:
        distributed.say(f"resume: {'from ' + resume if resume else 'no checkpoint yet in ' + str(checkpoints)}")
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.monotonic() - started
    meter.close()
    throughput = meter.summary(train_seconds - lines.eval_seconds)
    distributed.rank_note(f"trained on {meter.samples} lines ({meter.tokens} tokens) in {train_seconds:.1f}s")
    trainer.save_state()

    model_out = output / "model"
    trainer.save_model(str(model_out))  # the Trainer writes on rank 0 only
    if distributed.is_main():
        save_tokenizer(tokenizer, model_out, model_dir)
        write_json(model_out / LABELS_FILE, labels.to_json())

    final = test if test is not None and test.labelled else eval_data
    metrics: dict[str, Any] = {}
    if final is not None:
        metrics = evaluate_dataset(trainer.model, tokenizer, final, labels, args, output, "fine-tune")
    if test is not None and not test.labelled:
        predicted = predict_labels(trainer.model, tokenizer, test, args)
        if distributed.is_main():
            _write_submission(output / SUBMISSION_FILE, test, predicted, labels)
    if not distributed.is_main():
        return metrics
    metrics.update(
        {
            "task": "finetune",
            "train_examples": len(train.examples),
            "train_dropped_duplicates": dropped,
            "dev_examples": len(dev.examples) if dev else 0,
            "test_examples": len(test.examples) if test else 0,
            "epochs": args.epochs,
            "train_seconds": round(train_seconds, 1),
            **throughput,
            "global_batch_size": plan.global_batch,
            "per_device_batch_size": plan.per_device,
            "gradient_accumulation_steps": plan.accumulation,
            "train_loss": round(result.training_loss, 4),
            "resumed_from": resume,
            "use_keywords": args.keywords,
            "max_length": args.max_length,
            "parameters": count_parameters(trainer.model),
            "device": settings["device"],
            "bf16": settings["bf16"],
            "model_dir": str(model_out),
        }
    )
    plot_curves(lines.history, output / "training_curves.png")
    write_json(output / "metrics.json", metrics)
    emit_metrics_line({k: metrics[k] for k in ("accuracy", "macro_f1") if k in metrics} | {"final": True})
    return metrics


def evaluate(args: Namespace) -> dict[str, Any]:
    model_dir = Path(args.model)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    labels_file = model_dir / LABELS_FILE
    if labels_file.is_file():
        labels = LabelSet.from_json(json.loads(labels_file.read_text(encoding="utf-8")))
    else:
        labels = _label_set(args, None)
    path = Path(args.file) if args.file else _split_path(args, args.split)
    if path is None:
        raise DataError(f"no {args.split} file in {args.data}: pass --file FILE or --split NAME")
    dataset = _load(args, path, labels)
    if not dataset.labelled:
        raise DataError(f"{path}: has unlabelled lines; use `train_entry predict` for those")
    tokenizer, model = _load_for_inference(model_dir)
    metrics = evaluate_dataset(model, tokenizer, dataset, labels, args, output, "evaluate")
    metrics.update(
        {
            "task": "evaluate",
            "model_dir": str(model_dir),
            "use_keywords": args.keywords,
            "max_length": args.max_length,
            "processes": distributed.world_size(),
        }
    )
    if not distributed.is_main():
        return metrics
    write_json(output / "metrics.json", metrics)
    emit_metrics_line({"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "final": True})
    return metrics


def predict(args: Namespace) -> dict[str, Any]:
    model_dir = Path(args.model)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    labels = LabelSet.from_json(json.loads((model_dir / LABELS_FILE).read_text(encoding="utf-8")))
    path = Path(args.file) if args.file else _split_path(args, "test")
    if path is None:
        raise DataError(f"no test file in {args.data}: pass --file FILE")
    dataset = load_dataset(path, None, args.text_field, args.label_field, args.keywords)
    tokenizer, model = _load_for_inference(model_dir)
    predictions = predict_labels(model, tokenizer, dataset, args)
    summary = {
        "task": "predict",
        "file": str(path),
        "examples": len(dataset.examples),
        "submission": str(output / SUBMISSION_FILE),
        "processes": distributed.world_size(),
    }
    if not distributed.is_main():
        return summary
    _write_predictions(output / "predictions.jsonl", dataset, predictions, labels)
    _write_submission(output / SUBMISSION_FILE, dataset, predictions, labels)
    write_json(output / "predict_summary.json", summary)
    return summary
