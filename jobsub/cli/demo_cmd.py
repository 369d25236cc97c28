"""jobsub demo: the whole workflow on the current profile (the local default with nothing configured).

Builds a small starting checkpoint with train_entry (in a subprocess: the client never imports torch),
uploads it, the TNEWS sample and the training scripts with progress, submits bert-finetune, follows its
log, runs bert-evaluate on the fine-tuned model, and shows the results table and the confusion matrix.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from jobsub.cli.app import App, pass_app
from jobsub.cli.job_cmds import follow_job, render_results
from jobsub.cli.progress import progress_for
from jobsub.config import data_dir
from jobsub.errors import JobError
from jobsub.uri import ObjectURI

if TYPE_CHECKING:
    from jobsub.api import Client
    from jobsub.jobs.spec import JobSpec

SAMPLE = Path(__file__).resolve().parents[1] / "demo_data" / "tnews-sample"
TRAIN_ENTRY = Path(__file__).resolve().parents[2] / "train_entry"


def _step(app: App, number: int, text: str) -> None:
    app.console.print(f"\n[bold]{number}/6 {text}[/bold]")


def _run_job(app: App, client: Client, spec: JobSpec, inputs: dict[str, str]) -> str:
    """Submit, follow the log live, and stop the demo with the job's reason if it did not succeed."""
    job = client.submit(spec, inputs=inputs, on_message=app.console.print)
    job_id = job.id
    where = job.info().executor
    app.console.print(f"job [bold]{job_id}[/bold] on {where}; following its log (`jobsub logs -f {job_id}`)")
    status = follow_job(app, job_id, None, False)
    if status.cli_exit_code() != 0:
        raise JobError(f"job {job_id} ended {status.state.value}: {status.reason}")
    return job_id


@click.command("demo")
@click.option("--bucket", default="jobsub-demo", show_default=True, help="Bucket for the demo's checkpoint and data.")
@click.option("--epochs", default=8, show_default=True, help="Fine-tuning epochs (8 take about a minute on 2 CPUs).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), help="Local folder for the demo files.")
@click.option("--executor", metavar="KIND", help="Where the jobs run, e.g. docker (default: the profile's).")
@click.option("--image", help="Image for container executors (default: the templates' jobsub-train:latest).")
@click.option(
    "--gpus",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="resources.gpus of both jobs. The demo's tiny model trains on the CPU in about a minute; with "
    "--executor docker, a GPU needs the NVIDIA runtime on the engine.",
)
@pass_app
def demo_command(
    app: App, bucket: str, epochs: int, work_dir: Path | None, executor: str | None, image: str | None, gpus: int
) -> None:
    """Run the TNEWS fine-tune + evaluate workflow end to end on this machine.

    Uses the current profile (the embedded local store and executor unless you chose another). With
    `--executor docker` both jobs run in the job image (build it first with `jobsub image build`).
    The executor is checked (engine, image, scheduler) before anything is built or uploaded.
    """
    from jobsub.jobs.spec import apply_sets
    from jobsub.jobs.templates import load_template

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
        raise JobError(
            "the demo trains a model: install the training extra (pip install 'jobsub[train]' torch==2.13.0)"
        )
    if not TRAIN_ENTRY.is_dir():
        raise JobError(
            f"train_entry sources not found next to jobsub ({TRAIN_ENTRY}); install jobsub from its repository"
        )
    started = time.monotonic()
    ckpt_uri = ObjectURI.parse(f"s3://{bucket}/checkpoints/tiny-char/")
    data_uri = ObjectURI.parse(f"s3://{bucket}/data/tnews-sample/")
    inputs = {"data": str(data_uri), "model": str(ckpt_uri)}
    client = app.client(executor)
    job_sets = [f"resources.gpus={gpus}", *([f"image={image}"] if image else [])]
    finetune_spec = apply_sets(
        load_template("bert-finetune"),
        [f"params.epochs={epochs}", "params.lr=0.002", "params.batch_size=32", "params.max_length=48",
         "params.use_keywords=true", "params.save_steps=100", *job_sets],
    )  # fmt: skip
    # a missing engine, image or NVIDIA runtime is one line now, not after the checkpoint and the uploads
    client.check(client.plan(finetune_spec, inputs=inputs))
    work = work_dir or data_dir() / "demo"
    work.mkdir(parents=True, exist_ok=True)
    app.console.print(f"profile [bold]{app.profile_name}[/bold]: {client.store.description}; demo files in {work}")

    _step(app, 1, "building a small starting checkpoint (tiny BERT, character vocabulary of the sample)")
    ckpt = work / "ckpt-tiny"
    if not (ckpt / "config.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "train_entry", "init", "--preset", "tiny", "--max-positions", "128",
             "--vocab-from", str(SAMPLE / "train.json"), str(SAMPLE / "dev.json"), "--output", str(ckpt)],
            check=True, stdout=subprocess.DEVNULL, cwd=TRAIN_ENTRY.parent,
        )  # fmt: skip
    app.console.print(f"checkpoint in {ckpt}")

    _step(app, 2, "uploading the checkpoint and the TNEWS sample")
    for source, dest in ((ckpt, ckpt_uri), (SAMPLE, data_uri)):
        subscribers, context = progress_for("upload", app.console, False)
        with context:
            summary = client.upload([source], dest, subscribers=subscribers)
        app.console.print(
            f"{source.name} -> {dest}: {summary.files} files, {summary.files_skipped} already there (skipped)"
        )

    _step(app, 3, "submitting bert-finetune (the training scripts are packed and uploaded as its code)")
    scripts = work / "scripts"
    shutil.rmtree(scripts, ignore_errors=True)
    shutil.copytree(TRAIN_ENTRY, scripts / "train_entry", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    spec = finetune_spec.model_copy(update={"code": str(scripts)})
    finetune_id = _run_job(app, client, spec, inputs)

    _step(app, 4, "submitting bert-evaluate on the fine-tuned model")
    outputs = client.job(finetune_id, check=False).outputs_uri()
    spec = apply_sets(load_template("bert-evaluate"), ["params.use_keywords=true", "params.max_length=48", *job_sets])
    spec = spec.model_copy(update={"code": str(scripts)})
    evaluate_id = _run_job(app, client, spec, {"model": str(outputs.join("model").as_prefix()), "data": str(data_uri)})

    _step(app, 5, "results")
    evaluate = client.job(evaluate_id, check=False)
    results = evaluate.results()
    render_results(app, evaluate_id, results)

    _step(app, 6, "fetching the evaluation outputs")
    local = work / "results" / evaluate_id
    evaluate.download(local)
    click.echo(f"confusion matrix: {local / 'confusion_matrix.png'}")
    click.echo(
        f"accuracy {results.metrics.get('accuracy', 0):.3f}, macro-F1 "
        f"{results.metrics.get('macro_f1', 0):.3f} on {results.metrics.get('eval_examples')} test lines "
        f"(a tiny model trained from scratch on 1,200 lines; see docs/results.md for full-size runs)"
    )
    click.echo(
        f"demo finished in {time.monotonic() - started:.0f}s. Next: `jobsub jobs`, `jobsub results {finetune_id}`"
    )
    click.echo(f"see the demo's jobs in the browser (log, curves, results): jobsub ui --open, then /job/{finetune_id}")
