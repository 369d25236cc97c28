"""Job commands: submit, status, jobs, cancel, logs, results, templates. Thin over the Python API (jobsub.api):
options are parsed here, the API does the work, and what it returns (models) is rendered here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from jobsub.cli.app import App, pass_app, print_json, warn_line
from jobsub.cli.safe import log_line, markup, plain
from jobsub.costs import money
from jobsub.errors import JobsubError, SpecError, UsageError
from jobsub.jobs.records import JobStatus
from jobsub.jobs.records import State as JobState
from jobsub.units import human_duration, human_size

if TYPE_CHECKING:
    from jobsub.api import Job
    from jobsub.jobs.models import LogLine, Results


def _start_store_early(app: App) -> None:
    """An S3 profile's botocore start (most of this command's own start) begins on a thread now, beside
    what comes before the first request: reading the spec, importing the job service (storage/s3_client.py)."""
    from jobsub.api import start_early

    try:
        profile = app.profile
    except JobsubError:
        return  # said properly where the profile is used
    start_early(profile)


def _parse_pairs(values: tuple[str, ...], option: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise UsageError(f"{option} {value!r}: expected NAME=VALUE, e.g. {option} data=./tnews")
        pairs[name.strip()] = rest
    return pairs


def _secret_env(names: tuple[str, ...]) -> dict[str, str]:
    """--secret-env NAME: the value of NAME in this shell, for the job's environment only."""
    import os
    import re

    from jobsub.redact import register_secret

    values: dict[str, str] = {}
    for name in names:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise UsageError(f"--secret-env {name!r}: give the name of an environment variable, e.g. HF_TOKEN")
        if name.startswith("JOBSUB_"):
            raise UsageError(f"--secret-env {name}: JOBSUB_* variables are jobsub's own")
        if name not in os.environ:
            raise UsageError(f"--secret-env {name}: {name} is not set in this shell; export it first")
        values[name] = os.environ[name]
        register_secret(values[name])
    return values


def _render_line(line: LogLine, timestamps: bool) -> str:
    """A log line as text: the job wrote it, so its terminal escapes are shown, never acted on."""
    text = log_line(line.text)
    return f"{line.stamp()} {text}" if timestamps else text


def _job(app: App, job_id: str) -> Job:
    """A handle on JOB_ID; nothing is read yet, so an unknown id fails in the command's first read."""
    return app.client().job(job_id, check=False)


def follow_job(app: App, job_id: str, tail: int | None, timestamps: bool) -> JobStatus:
    _start_store_early(app)
    job = _job(app, job_id)
    try:
        waiting = lambda reason: click.echo(f"[jobsub] waiting to start: {plain(reason)}", err=True)  # noqa: E731
        for line in job.log_lines(follow=True, tail=tail, on_error=warn_line, on_waiting=waiting):
            click.echo(_render_line(line, timestamps))
    except KeyboardInterrupt:
        app.console.print(
            f"stopped following; the job keeps running. Resume with `jobsub logs -f {job_id}`, "
            f"stop it with `jobsub cancel {job_id}`"
        )
        sys.exit(130)
    assert job.final_status is not None
    return job.final_status


def _final_line(job_id: str, status: JobStatus) -> str:
    """Plain text (reasons come from records anyone with the bucket can write): print it with markup off."""
    detail = f" ({status.reason})" if status.reason else ""
    return plain(f"job {job_id} {status.state.value}{detail}")


# -- submit ----------------------------------------------------------------------------------------------
@click.command("submit")
@click.argument("template", required=False)
@click.option("-f", "--file", "spec_file", type=click.Path(dir_okay=False, path_type=Path), help="A job spec YAML.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override params.X, env.X, resources.X, ...")
@click.option("--input", "inputs", multiple=True, metavar="NAME=URI|PATH", help="An input; local paths are uploaded.")
@click.option("--output", help="URI prefix for the job's outputs (default: inside the job record).")
@click.option("--name", help="Job name (default: the spec's name).")
@click.option("--idempotency-key", help="With the same name and key, a retried submit returns the existing job.")
@click.option("--code", "code", type=click.Path(file_okay=False, path_type=Path), help="Code folder to pack.")
@click.option(
    "--executor",
    metavar="KIND",
    help="Where the job runs: local, docker, slurm, ray (default: the profile's executor).",
)
@click.option(
    "--max-cost",
    type=float,
    metavar="AMOUNT",
    help="Refuse the job if its upper estimate is above AMOUNT; stop it when its running cost reaches AMOUNT.",
)
@click.option(
    "--secret-env",
    "secret_env",
    multiple=True,
    metavar="NAME",
    help="Pass the variable NAME from this shell into the job's environment, never stored in any record.",
)
@click.option("--follow", is_flag=True, help="Follow the log to the end and exit with the job's exit code.")
@click.option(
    "--dry-run", is_flag=True, help="Print the resolved spec, planned uploads and cost estimate; submit nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Print the job id and record as JSON.")
@pass_app
def submit_command(
    app: App,
    template: str | None,
    spec_file: Path | None,
    sets: tuple[str, ...],
    inputs: tuple[str, ...],
    output: str | None,
    name: str | None,
    idempotency_key: str | None,
    code: Path | None,
    executor: str | None,
    max_cost: float | None,
    secret_env: tuple[str, ...],
    follow: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Submit a job from a TEMPLATE (see `jobsub templates`) or a spec file (-f job.yaml).

    \b
    Examples:
      jobsub submit python-script --code ./src --set params.script=train.py --set "params.args=--epochs 3"
      jobsub submit bert-finetune --input data=./tnews --input model=s3://b/ckpt/ --set params.epochs=3
      jobsub submit -f job.yaml --name nightly --idempotency-key 2026-11-25 --follow
      HF_TOKEN=... jobsub submit -f job.yaml --secret-env HF_TOKEN      a secret, never stored
    """
    from jobsub.cli.progress import progress_for

    if bool(template) == bool(spec_file):
        raise UsageError("name a TEMPLATE or a spec file with -f job.yaml (not both); see `jobsub templates`")
    _start_store_early(app)
    client = app.client(executor)
    spec = spec_file if spec_file else client.template(template or "")  # a spec file: its folder is the base
    if code and not code.is_dir():
        raise SpecError(f"--code {code}: no such folder")
    secrets = _secret_env(secret_env)
    if max_cost is not None and not (max_cost >= 0 and max_cost != float("inf")):
        raise UsageError(f"--max-cost {max_cost}: give a finite amount >= 0")
    plan = client.plan(
        spec,
        inputs=_parse_pairs(inputs, "--input"),
        sets=sets,
        name=name,
        code=code,
        output=output,
        idempotency_key=idempotency_key,
        max_cost=max_cost,
    )
    if dry_run:
        print_json({**plan.document().model_dump(mode="json"), "dry_run": True})
        return
    if plan.estimate is not None and not as_json:
        app.console.print(plan.estimate.line(), markup=False, highlight=False)
    subscribers, context = progress_for("upload", app.console, as_json)
    with context:
        job = client.submit(
            plan,
            idempotency_key=idempotency_key,
            on_message=lambda m: None if as_json else app.console.print(plain(m), markup=False),
            secret_env=secrets,
            subscribers=subscribers,
        )
    job_id, created = job.id, job.created
    if as_json:
        print_json({"job_id": job_id, "created": created, "record": job.record_uri(), "outputs": plan.outputs})
    else:
        click.echo(job_id)
        if not created:
            app.console.print(
                f"a job named {plan.spec.name!r} with this idempotency key exists: {plain(job_id)} (nothing started)",
                markup=False,
            )
        if not follow:
            app.console.print(
                "Next steps:\n"
                f"  jobsub logs -f {job_id}      follow the log\n"
                f"  jobsub status {job_id}       state, exit code, timings\n"
                f"  jobsub cancel {job_id}       stop it\n"
                f"  jobsub results {job_id}      metrics, plots and outputs when it is done"
            )
    if follow:
        status = follow_job(app, job_id, None, False)
        app.console.print(_final_line(job_id, status), markup=False)
        sys.exit(status.cli_exit_code())


# -- status / jobs / cancel -----------------------------------------------------------------------------
@click.command("status")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def status_command(app: App, job_id: str, as_json: bool) -> None:
    """Show a job's state, exit code, reason, timings and where its record and outputs are."""
    info = _job(app, job_id).info()
    if as_json:
        print_json(info.model_dump(mode="json"))
        return
    status = info.status
    duration = info.duration_seconds
    rows = [
        ("job", info.id),
        ("state", status.state.value + (f" (attempt {status.attempt})" if status.attempt > 1 else "")),
        ("exit code", "" if status.exit_code is None else str(status.exit_code)),
        ("reason", status.reason or ""),
        ("created", status.created),
        ("started", status.started or ""),
        ("finished", status.finished or ""),
        ("duration", human_duration(duration) if duration is not None else ""),
        ("executor", info.executor),
        ("cost", info.cost.describe()),
        ("record", info.record),
        ("outputs", info.outputs),
    ]
    for label, value in rows:
        if value:
            click.echo(f"{label:<10} {plain(value)}")


@click.command("jobs")
@click.option(
    "--state",
    type=click.Choice(
        ["QUEUED", "STAGING", "RUNNING", "UPLOADING", "SUCCEEDED", "FAILED", "CANCELLED", "LOST"], case_sensitive=False
    ),
    help="Only jobs in this state.",
)
@click.option("--limit", default=20, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def jobs_command(app: App, state: str | None, limit: int, as_json: bool) -> None:
    """List jobs in the profile's job store, newest first."""
    with_cost = not app.profile.prices.is_zero
    rows = app.client().jobs(state, limit)
    if as_json:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    if not rows:
        click.echo("no jobs yet; try `jobsub templates` and `jobsub submit`")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("ID", "NAME", "STATE", "STARTED", "DURATION", "EXIT", *(["COST"] if with_cost else [])):
        table.add_column(column)
    for row in rows:
        duration = row.duration_seconds
        table.add_row(  # every cell comes from a record in the bucket: shown as text, never as markup
            markup(row.id),
            markup(row.name),
            markup(row.state.value),
            markup((row.started or "")[:19].replace("T", " ")),
            human_duration(duration) if duration is not None else "",
            "" if row.exit_code is None else markup(row.exit_code),
            *([markup(money(row.cost.compute, row.cost.currency)) if row.cost else ""] if with_cost else []),
        )
    app.out.print(table)


@click.command("cancel")
@click.argument("job_id")
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until the job reached a final state.")
@pass_app
def cancel_command(app: App, job_id: str, wait: bool) -> None:
    """Stop a job: SIGTERM to its process group, SIGKILL after a grace period. Works from any shell."""
    job = _job(app, job_id)
    status = job.cancel()
    if status.state == JobState.LOST:
        click.echo(_final_line(job_id, status) + ": " + plain(job.cancel_leftovers(status)))
        return
    if status.state.final:
        click.echo(_final_line(job_id, status) + " (already final)")
        return
    if not wait:
        click.echo(f"cancel requested for {job_id}")
        return
    status = job.wait(timeout=120)
    click.echo(_final_line(job_id, status))


# -- logs / results --------------------------------------------------------------------------------------
@click.command("logs")
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep following until the job ends; exit with its exit code.")
@click.option("--tail", type=int, help="Only the last N lines (then follow, with -f).")
@click.option("--timestamps", is_flag=True, help="Prefix each line with the time the job printed it.")
@pass_app
def logs_command(app: App, job_id: str, follow: bool, tail: int | None, timestamps: bool) -> None:
    """Print a job's log (stdout and stderr in order, with jobsub's own [jobsub] lines)."""
    if follow:
        status = follow_job(app, job_id, tail, timestamps)
        app.console.print(_final_line(job_id, status), markup=False)
        sys.exit(status.cli_exit_code())
    for line in _job(app, job_id).log_lines(tail=tail):
        click.echo(_render_line(line, timestamps))


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


@click.command("results")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def results_command(app: App, job_id: str, as_json: bool) -> None:
    """Final metrics as a table, with the plots and outputs listed by URI."""
    results = _job(app, job_id).results()
    for warning in results.warnings:
        warn_line(warning)
    if as_json:
        print_json(results.model_dump(mode="json"))
        return
    render_results(app, job_id, results)


def render_results(app: App, job_id: str, results: Results) -> None:
    """The metrics table, per-class table, plots and outputs of one job (also used by `jobsub demo`)."""
    from rich.table import Table

    click.echo(
        plain(
            f"job {job_id}: {results.state.value}"
            + (f", exit code {results.exit_code}" if results.exit_code not in (None, 0) else "")
        )
    )
    metrics = results.metrics
    # numbers only: paths and settings in metrics.json stay available through --json
    scalars = {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if scalars:
        # metric names, class labels and paths are the job's own output: shown as text, never as markup
        source = markup(results.metrics_source)
        table = Table(title=f"metrics ({source})", box=None, pad_edge=False, title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for key, value in scalars.items():
            table.add_row(markup(key), _format_value(value))
        app.out.print(table)
        per_class = metrics.get("per_class")
        if isinstance(per_class, dict) and per_class:
            table = Table(title="per class", box=None, pad_edge=False, title_justify="left")
            for column in ("class", "precision", "recall", "f1", "support"):
                table.add_column(column, justify="left" if column == "class" else "right")
            for label, row in per_class.items():
                if not isinstance(row, dict):
                    continue
                values = (markup(_format_value(row.get(c, ""))) for c in ("precision", "recall", "f1", "support"))
                table.add_row(markup(label), *values)
            app.out.print(table)
    else:
        click.echo(
            "no metrics recorded (the program writes metrics.json to its outputs or lines to $JOBSUB_METRICS_FILE)"
        )
    if results.plots:
        click.echo("plots:")
        for uri in results.plots:
            click.echo(f"  {plain(uri)}")
    click.echo(
        f"outputs: {plain(results.outputs)} ({len(results.files)} files, "
        f"{human_size(sum(f.size for f in results.files))})"
    )
    click.echo(f"  fetch them with: jobsub download {job_id} ./{job_id}")
    if results.cost is not None:
        click.echo(f"cost: {plain(results.cost.describe())}")


# -- templates --------------------------------------------------------------------------------------------
@click.group("templates", invoke_without_command=True)
@click.pass_context
def templates_command(ctx: click.Context) -> None:
    """List the job templates (built-in and your own in <config dir>/templates)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(templates_list)


@templates_command.command("list")
@click.option("--json", "as_json", is_flag=True)
def templates_list(as_json: bool = False) -> None:
    """List templates with their one-line descriptions."""
    from jobsub.jobs.spec import load_spec
    from jobsub.jobs.templates import template_paths

    rows = []
    for name, path in template_paths().items():
        try:
            description = load_spec(path).description.strip().splitlines()[0]
        except (SpecError, IndexError) as exc:
            description = f"(invalid: {exc})" if isinstance(exc, SpecError) else ""
        rows.append({"name": name, "description": description, "path": str(path)})
    if as_json:
        print_json(rows)
        return
    width = max((len(r["name"]) for r in rows), default=0)
    for row in rows:
        click.echo(plain(f"{row['name']:<{width}}  {row['description']}"))
    click.echo("\nshow one with `jobsub templates show NAME`; run it with `jobsub submit NAME --input ...`")


@templates_command.command("show")
@click.argument("name")
def templates_show(name: str) -> None:
    """Print a template's YAML (copy it, edit it, submit it with -f)."""
    from jobsub.jobs.templates import find_template

    click.echo(find_template(name).read_text(encoding="utf-8"), nl=False)
