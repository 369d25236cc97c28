"""Domain-adaptive pre-training: masked-LM on unlabelled news titles (plus training sentences), never on
the evaluation sentences. Writes a model folder that `finetune --model` starts from."""

from __future__ import annotations

import math
import random
import time
from argparse import Namespace
from pathlib import Path
from typing import Any

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
from train_entry.data import DataError, find_split, load_dataset
from train_entry.modeling import count_parameters, init_model, load_tokenizer, save_tokenizer
from train_entry.reporting import emit_metrics_line, plot_curves, write_json


def _texts(args: Namespace) -> tuple[list[str], int, list[str]]:
    """(pre-training texts, how many were dropped for being in an evaluation file, the files used)."""
    sources: list[Path] = [Path(p) for p in args.text_files]
    held_out_files: list[Path] = [Path(p) for p in args.exclude]
    if args.data:
        folder = Path(args.data)
        sources += [p for p in (find_split(folder, "unlabeled"), find_split(folder, "train")) if p]
        held_out_files += [p for p in (find_split(folder, "dev"), find_split(folder, "test")) if p]
    if not sources:
        raise DataError("nothing to pre-train on: pass --data DIR (unlabeled.json / train.json) or --text-file FILE")
    held_out = {e.text for p in held_out_files for e in load_dataset(p, None, args.text_field).examples}
    texts: list[str] = []
    seen: set[str] = set()
    dropped = 0
    for path in sources:
        for example in load_dataset(path, None, args.text_field, use_keywords=args.keywords).examples:
            sentence = example.text.split("[SEP]", 1)[0]
            if sentence in held_out:
                dropped += 1
                continue
            if example.text not in seen:
                seen.add(example.text)
                texts.append(example.text)
    return texts, dropped, [str(p) for p in sources]


def pretrain(args: Namespace) -> dict[str, Any]:
    from transformers import (
        BertForMaskedLM,
        DataCollatorForLanguageModeling,
        PrinterCallback,
        Trainer,
        set_seed,
    )

    set_seed(args.seed)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    texts, dropped, files = _texts(args)
    random.Random(args.seed).shuffle(texts)
    held = max(1, len(texts) // 50)
    eval_texts, train_texts = texts[:held], texts[held:]
    distributed.say(
        f"pretrain data: {len(train_texts)} titles (+{held} held out for perplexity) from {', '.join(files)}; "
        f"{dropped} dropped for being in an evaluation file"
    )
    model_dir = Path(args.model) if args.model else None
    if model_dir is None:
        if not args.vocab:
            raise DataError("pass --model DIR or --vocab vocab.txt --preset NAME")
        model_dir = output / "init"
        if distributed.is_main():  # one writer; the other ranks read the folder once it is complete
            init_model(Path(args.vocab), args.preset, model_dir, seed=args.seed)
        distributed.barrier()
    tokenizer = load_tokenizer(model_dir)
    model = BertForMaskedLM.from_pretrained(str(model_dir))
    settings = device_settings()
    distributed.say(
        f"model: {model_dir} ({count_parameters(model) / 1e6:.1f}M parameters) {describe_processes(settings)}"
    )
    collator = DataCollatorForLanguageModeling(
        tokenizer, mlm_probability=args.mlm_probability, whole_word_mask=args.whole_word_mask, seed=args.seed
    )
    checkpoints = output / "checkpoints"
    lines = MetricLines()
    plan = batch_plan(args)
    meter = distributed.ThroughputMeter(model)
    trainer = Trainer(
        model=model,
        args=training_arguments(args, checkpoints, True, args.batch_size, plan),
        train_dataset=encode(tokenizer, train_texts, args.max_length),
        eval_dataset=encode(tokenizer, eval_texts, args.max_length),
        data_collator=collator,
        callbacks=[lines],
    )
    trainer.remove_callback(PrinterCallback)  # MetricLines prints one JSON line per step instead
    resume = latest_checkpoint(checkpoints) if args.resume else None
    if args.resume:
        distributed.say(f"resume: {'from ' + resume if resume else 'no checkpoint yet in ' + str(checkpoints)}")
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.monotonic() - started
    meter.close()
    throughput = meter.summary(seconds - lines.eval_seconds)
    distributed.rank_note(f"trained on {meter.samples} titles ({meter.tokens} tokens) in {seconds:.1f}s")
    evaluation = trainer.evaluate()
    model_out = output / "model"
    trainer.save_model(str(model_out))  # the Trainer writes on rank 0 only
    if not distributed.is_main():
        return {"task": "pretrain"}
    save_tokenizer(tokenizer, model_out, model_dir)
    metrics = {
        "task": "pretrain",
        "train_texts": len(train_texts),
        "held_out_texts": held,
        "dropped_evaluation_sentences": dropped,
        "epochs": args.epochs,
        "train_seconds": round(seconds, 1),
        **throughput,
        "global_batch_size": plan.global_batch,
        "per_device_batch_size": plan.per_device,
        "gradient_accumulation_steps": plan.accumulation,
        "train_loss": round(result.training_loss, 4),
        "eval_loss": round(evaluation["eval_loss"], 4),
        "perplexity": round(math.exp(min(evaluation["eval_loss"], 50)), 2),
        "whole_word_mask": args.whole_word_mask,
        "mlm_probability": args.mlm_probability,
        "resumed_from": resume,
        "model_dir": str(model_out),
        "device": settings["device"],
    }
    plot_curves(lines.history, output / "training_curves.png")
    write_json(output / "metrics.json", metrics)
    emit_metrics_line({"eval_loss": metrics["eval_loss"], "perplexity": metrics["perplexity"], "final": True})
    return metrics
