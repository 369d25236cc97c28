"""Data-parallel scaling on the CPU: the same fine-tune with 1 and 2 processes (torchrun, gloo).

Three runs of `python -m train_entry.launch finetune` on the same data, model, seed and global batch:
  1 process x 1 thread    the per-process baseline: efficiency = samples/s(2 processes) / (2 x this)
  1 process x N threads   what one process does with every core (N = the cores this process may use)
  2 processes x N/2 threads
Training samples/s come from metrics.json (samples and tokens counted on every rank, evaluation time taken
out); accuracy and macro-F1 on the test file show the result is unchanged within noise.

    python benchmarks/scaling.py [--data DIR] [--preset tiny] [--epochs 2] [--out benchmarks/results/scaling]

By default the data is the TNEWS sample shipped in jobsub/demo_data (1,200 training lines, 15 classes).
Writes <out>/scaling.json and prints a Markdown table for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "jobsub" / "demo_data" / "tnews-sample"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def train(args: argparse.Namespace, model: Path, out: Path, processes: int, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBSUB_")}
    env["OMP_NUM_THREADS"] = str(threads)
    command = [
        sys.executable, "-m", "train_entry.launch", "--processes", str(processes), "finetune",
        "--data", str(args.data), "--model", str(model), "--output", str(out), "--epochs", str(args.epochs),
        "--batch-size", "32", "--lr", args.lr, "--max-length", "48", "--keywords", "true", "--seed", "42",
        "--logging-steps", "20", "--save-steps", "100000",
    ]  # fmt: skip
    started = time.monotonic()
    with (out.parent / f"{out.name}.log").open("w") as log:
        subprocess.run(command, check=True, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "run": f"{processes} process{'es' if processes > 1 else ''} x {threads} thread{'s' if threads > 1 else ''}",
        "processes": processes,
        "threads_per_process": threads,
        "wall_seconds": round(time.monotonic() - started, 1),
        "train_seconds": metrics["throughput_seconds"],
        "samples_per_second": metrics["train_samples_per_second"],
        "tokens_per_second": metrics["train_tokens_per_second"],
        "per_rank_samples": metrics["per_rank_samples"],
        "accuracy": round(metrics["accuracy"], 4),
        "macro_f1": round(metrics["macro_f1"], 4),
        "train_loss": metrics["train_loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SAMPLE)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--epochs", default="2")
    parser.add_argument("--lr", default="3e-3")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scaling")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.out / "init"
    subprocess.run(
        [sys.executable, "-m", "train_entry", "init", "--vocab-from", str(args.data / "train.json"),
         "--preset", args.preset, "--output", str(model), "--max-positions", "64"],
        check=True, cwd=REPO, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    n = cores()
    plan = [(1, 1), (1, n), (2, max(1, n // 2))]
    rows = [train(args, model, args.out / f"p{p}-t{t}", p, t) for p, t in plan]
    base, whole, two = rows
    summary = {
        "cores": n,
        "load_average_after": os.getloadavg(),
        "preset": args.preset,
        "epochs": args.epochs,
        "data": str(args.data),
        "runs": rows,
        "scaling_efficiency_vs_1x1": round(two["samples_per_second"] / (2 * base["samples_per_second"]), 3),
        "speedup_vs_1_process_all_cores": round(two["samples_per_second"] / whole["samples_per_second"], 3),
        "accuracy_difference": round(two["accuracy"] - base["accuracy"], 4),
    }
    (args.out / "scaling.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("| run | train s | samples/s | tokens/s | accuracy | macro-F1 | train loss | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['train_seconds']} | {r['samples_per_second']} | {r['tokens_per_second']} | "
            f"{r['accuracy']:.3f} | {r['macro_f1']:.3f} | {r['train_loss']} | {r['wall_seconds']} |"
        )
    print(
        f"\nscaling efficiency (2 processes vs 2 x 1-thread process): {summary['scaling_efficiency_vs_1x1']}; "
        f"speedup over one {n}-thread process: {summary['speedup_vs_1_process_all_cores']}; "
        f"accuracy difference: {summary['accuracy_difference']:+.4f}; cores: {n}; "
        f"load average after: {', '.join(f'{x:.1f}' for x in summary['load_average_after'])}"
    )


if __name__ == "__main__":
    main()
