"""Does domain-adaptive pre-training on news titles beat a general (here: new) model on TNEWS?

Trains on ../shared/data/tnews-10k (dev.json + test.json, 10,000 labelled lines, deduplicated against the
evaluation set), evaluates on FewCLUE's test_public.json (2,010 lines, 134 per class), with FewCLUE's
dev_few_all.json for the per-epoch curves. Four fine-tunes of the same new BERT: (a) from its random
initialisation and (b) after masked-LM pre-training on FewCLUE's 20,000 unlabelled titles plus the training
titles (never the evaluation titles), each with and without keywords.

    python benchmarks/tnews.py [--preset mini] [--epochs 5] [--pretrain-epochs 3] [--out benchmarks/results/tnews]

Writes <out>/summary.json and a Markdown table (<out>/table.md) for docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def run(*args: str, log: Path) -> float:
    started = time.monotonic()
    with log.open("w") as handle:
        subprocess.run(
            [sys.executable, "-m", "train_entry", *args], check=True, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT
        )
    return time.monotonic() - started


def prepare(out: Path) -> Path:
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    tnews, few = SHARED / "data" / "tnews-10k", SHARED / "data" / "fewclue-tnews"
    with (data / "train.json").open("w", encoding="utf-8") as handle:
        for name in ("dev.json", "test.json"):
            handle.write((tnews / name).read_text(encoding="utf-8"))
    shutil.copyfile(few / "dev_few_all.json", data / "dev.json")
    shutil.copyfile(few / "test_public.json", data / "test.json")
    shutil.copyfile(few / "label_index2en2zh.json", data / "label_index2en2zh.json")
    shutil.copyfile(few / "unlabeled.json", data / "unlabeled.json")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--epochs", default="5")
    parser.add_argument("--pretrain-epochs", default="3")
    parser.add_argument("--lr", default="5e-4")
    parser.add_argument("--max-length", default="64")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tnews")
    args = parser.parse_args()
    if not (SHARED / "data" / "tnews-10k").is_dir():
        sys.exit(f"needs {SHARED}/data (see ../shared/DATA.md)")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    data = prepare(out)
    vocab = SHARED / "vocab" / "bert-base-chinese" / "vocab.txt"
    init = out / "init"
    run("init", "--vocab", str(vocab), "--preset", args.preset, "--output", str(init), log=out / "init.log")

    pretrained = out / "pretrain"
    pretrain_seconds = run(
        "pretrain", "--data", str(data), "--model", str(init), "--output", str(pretrained),
        "--epochs", args.pretrain_epochs, "--batch-size", "64", "--lr", args.lr, "--max-length", args.max_length,
        "--save-steps", "1000", log=out / "pretrain.log",
    )  # fmt: skip
    pretrain_metrics = json.loads((pretrained / "metrics.json").read_text())

    rows = []
    for start, model in (("new", init), ("pretrained", pretrained / "model")):
        for keywords in ("false", "true"):
            name = f"{start}-kw{keywords}"
            seconds = run(
                "finetune", "--data", str(data), "--model", str(model), "--output", str(out / name),
                "--epochs", args.epochs, "--batch-size", "64", "--lr", args.lr, "--max-length", args.max_length,
                "--keywords", keywords, "--save-steps", "1000", log=out / f"{name}.log",
            )  # fmt: skip
            metrics = json.loads((out / name / "metrics.json").read_text())
            rows.append({
                "model": start, "keywords": keywords == "true", "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"], "train_examples": metrics["train_examples"],
                "dropped_duplicates": metrics["train_dropped_duplicates"], "train_seconds": metrics["train_seconds"],
                "samples_per_second": metrics["train_samples_per_second"], "wall_seconds": round(seconds, 1),
                "parameters": metrics["parameters"],
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    summary = {
        "preset": args.preset,
        "epochs": args.epochs,
        "lr": args.lr,
        "max_length": args.max_length,
        "pretrain": {**pretrain_metrics, "wall_seconds": round(pretrain_seconds, 1)},
        "runs": rows,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [
        "| start | keywords | accuracy | macro-F1 | train lines | train s | samples/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {'yes' if r['keywords'] else 'no'} | {r['accuracy'] * 100:.1f} | "
            f"{r['macro_f1'] * 100:.1f} | {r['train_examples']} | {r['train_seconds']:.0f} | "
            f"{r['samples_per_second']:.0f} |"
        )
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
