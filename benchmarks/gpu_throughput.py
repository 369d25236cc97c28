"""BERT-base fine-tuning throughput on the GPUs of this machine: 1 GPU, then all of them (torchrun, NCCL).

The figure docs/performance.md asks for: BERT-base (12 layers x 768), sequences of 128 tokens, bf16 where the
GPU has it (train_entry picks it), samples/s and tokens/s from metrics.json (training time only, evaluation
taken out). TNEWS titles are short (about 25 characters), so each training line here joins titles of one
class from the shipped sample until it is longer than 128 characters: every line is truncated to exactly
128 tokens, and the numbers are length-128 numbers, not those of 30-token titles padded to their batch.

    python benchmarks/gpu_throughput.py [--vocab ../shared/vocab/bert-base-chinese/vocab.txt]
                                        [--lines 16000] [--batch-size 64] [--out benchmarks/results/gpu]

Needs a CUDA GPU (it exits 2 without one). Writes <out>/gpu_throughput.json and prints a Markdown table.
The model is new (random weights): throughput does not depend on the weights, and no hub is reachable here.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "jobsub" / "demo_data" / "tnews-sample"
SHARED_VOCAB = REPO.parent / "shared" / "vocab" / "bert-base-chinese" / "vocab.txt"


def long_lines(source: Path, count: int, min_chars: int, seed: int) -> list[str]:
    """`count` JSON lines, each joining random titles of one class until it is over `min_chars` characters."""
    by_label: dict[str, list[dict]] = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        by_label.setdefault(row["label"], []).append(row)
    labels = sorted(by_label)
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        rows = by_label[rng.choice(labels)]
        parts: list[str] = []
        while sum(len(p) for p in parts) <= min_chars:
            parts.append(rng.choice(rows)["sentence"])
        first = rows[0]
        out.append(json.dumps({**first, "sentence": "，".join(parts)}, ensure_ascii=False) + "\n")
    return out


def prepare(folder: Path, lines: int, max_length: int) -> Path:
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.json").write_text("".join(long_lines(SAMPLE / "train.json", lines, max_length + 10, 1)))
    (data / "dev.json").write_text("".join(long_lines(SAMPLE / "dev.json", 256, max_length + 10, 2)))
    (data / "test.json").write_text("".join(long_lines(SAMPLE / "test.json", 512, max_length + 10, 3)))
    (data / "labels.json").write_text((SAMPLE / "labels.json").read_text(encoding="utf-8"))
    return data


def finetune(args: argparse.Namespace, data: Path, model: Path, out: Path, processes: int) -> dict:
    command = [
        sys.executable, "-m", "train_entry.launch", "--processes", str(processes), "finetune",
        "--data", str(data), "--model", str(model), "--output", str(out), "--epochs", "1",
        "--batch-size", str(args.batch_size * processes), "--lr", "5e-5", "--max-length", str(args.max_length),
        "--eval-batch-size", "256", "--logging-steps", "50", "--save-steps", "1000000",
    ]  # fmt: skip
    started = time.monotonic()
    with (out.parent / f"{out.name}.log").open("w") as log:
        subprocess.run(command, check=True, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "processes": metrics["processes"],
        "device": metrics.get("device"),
        "global_batch": args.batch_size * processes,
        "wall_seconds": round(time.monotonic() - started, 1),
        "train_seconds": metrics["throughput_seconds"],
        "samples_per_second": metrics["train_samples_per_second"],
        "tokens_per_second": metrics["train_tokens_per_second"],
        "accuracy": round(metrics["accuracy"], 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=Path, default=SHARED_VOCAB, help="bert-base-chinese's vocab.txt")
    parser.add_argument("--lines", type=int, default=16000, help="training lines (one epoch)")
    parser.add_argument("--batch-size", type=int, default=64, help="lines per GPU per step")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "gpu")
    args = parser.parse_args()

    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 0:
        print("no CUDA GPU here: this benchmark measures GPU throughput", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    data = prepare(args.out, args.lines, args.max_length)
    model = args.out / "model"
    init = [sys.executable, "-m", "train_entry", "init", "--vocab", str(args.vocab), "--preset", "base"]
    made = subprocess.run([*init, "--output", str(model)], cwd=REPO, capture_output=True, text=True)
    if made.returncode != 0:
        print(f"train_entry init failed:\n{made.stdout}{made.stderr}", file=sys.stderr)
        return 1
    rows = [finetune(args, data, model, args.out / "gpu1", 1)]
    if gpus > 1:
        rows.append(finetune(args, data, model, args.out / f"gpu{gpus}", gpus))
    summary = {
        "gpu": torch.cuda.get_device_name(0),
        "gpus": gpus,
        "bf16": torch.cuda.is_bf16_supported(),
        "torch": torch.__version__,
        "model": "BERT-base (12 x 768, new weights)",
        "max_length": args.max_length,
        "lines": args.lines,
        "runs": rows,
    }
    (args.out / "gpu_throughput.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['gpu']} x {gpus}, torch {summary['torch']}, bf16 {summary['bf16']}, length {args.max_length}")
    print("| GPUs | global batch | samples/s | tokens/s | train s | wall s |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['processes']} | {row['global_batch']} | {row['samples_per_second']:.0f} | "
            f"{row['tokens_per_second']:.0f} | {row['train_seconds']} | {row['wall_seconds']} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
