"""upload, download, uploads (list/abort), ls, rm: options parsed here, the transfers and the pending-upload
listing done by the Python API (jobsub.api.Client), their summaries rendered here."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from collections.abc import Callable

import click

from jobsub.cli.app import App, error_line, pass_app, print_json, warn_line
from jobsub.cli.progress import progress_for
from jobsub.cli.safe import markup, plain
from jobsub.errors import JobsubError, TransferInterrupted, UsageError
from jobsub.units import human_duration, human_size, parse_duration, parse_size
from jobsub.uri import ObjectURI, is_remote


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except JobsubError as exc:
        raise click.BadParameter(str(exc)) from None


transfer_options = [
    click.option(
        "--part-size", callback=_size, help="Multipart part size, e.g. 8MiB or 64M (default: automatic, >= 8 MiB)."
    ),
    click.option(
        "--concurrency",
        "-j",
        type=click.IntRange(1, 64),
        default=8,
        show_default=True,
        help="Parts transferred in parallel.",
    ),
    click.option(
        "--max-bandwidth", callback=_size, help="Cap the transfer rate in bytes per second, e.g. 20MiB (default: none)."
    ),
    click.option(
        "--read-timeout",
        type=click.FloatRange(min=1),
        help="Seconds without a reply before a request fails (default: the profile's read_timeout, 60).",
    ),
    click.option(
        "--json", "as_json", is_flag=True, help="Print a JSON summary (bytes, parts, MB/s, how each file was verified)."
    ),
    click.option("--quiet", "-q", is_flag=True, help="No progress output."),
]


def with_transfer_options(func: Callable) -> Callable:
    for option in reversed(transfer_options):
        func = option(func)
    return func


def _sigterm_as_interrupt() -> None:
    def handler(signum, frame):  # SIGTERM behaves like Ctrl-C: stop, keep the transfer resumable
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run_transfer(app: App, verb: str, quiet: bool, as_json: bool, action: Callable, skip_unsafe: bool = False) -> None:
    """Run a transfer with progress; print the summary; turn Ctrl-C into a resume hint and exit 130.
    `action(subscribers)` runs it through the API and returns its TransferSummary."""
    _sigterm_as_interrupt()
    subscribers, context = progress_for(verb, None if quiet else app.console, quiet)  # -q: rich not imported
    try:
        with context:
            summary = action(subscribers)
    except TransferInterrupted:
        signal.signal(signal.SIGINT, lambda *a: os._exit(130))  # a second Ctrl-C exits at once
        click.echo(f"{verb} interrupted; what was sent is kept. Resume with:", err=True)
        click.echo(f"  jobsub {plain(shlex.join(sys.argv[1:]))}", err=True)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(130)  # do not wait for parts in flight: the server and the journal already know them
    if as_json:
        print_json(summary.as_dict())
    elif not quiet:
        parts = f"{summary.parts_sent} parts sent, {summary.parts_reused} reused"
        counts = summary.verification_counts()
        verified = ", ".join(f"{n} {how}" for how, n in counts.items()) or "none"
        refused = f", {len(summary.refused)} refused (unsafe keys)" if summary.refused else ""
        click.echo(
            f"{verb}: {summary.files_transferred} transferred ({summary.files_resumed} resumed), "
            f"{summary.files_skipped} unchanged, {len(summary.failures)} failed{refused}; "
            f"{human_size(summary.bytes_transferred)} in {summary.seconds:.1f}s; {parts}; verified by: {verified}",
            err=True,
        )
    for note in summary.skipped:
        warn_line(f"not uploaded: {note}")
    for refused_key in summary.refused:
        warn_line(f"refused unsafe key {refused_key!r}")
    if summary.failures:
        for failure in summary.failures:
            error_line(failure)
    if summary.refused and not skip_unsafe:
        error_line(
            f"{len(summary.refused)} object(s) refused because their keys are unsafe as local paths; "
            "the rest was downloaded (add --skip-unsafe to accept that and exit 0)"
        )
    if summary.failures or (summary.refused and not skip_unsafe):
        sys.exit(1)


@click.command("upload")
@click.argument("sources", nargs=-1, required=True, type=click.Path())
@click.argument("dest")
@with_transfer_options
@click.option("--dry-run", is_flag=True, help="Print the plan (files, parts, bytes, requests) and send nothing.")
@pass_app
def upload_command(
    app: App,
    sources: tuple[str, ...],
    dest: str,
    part_size,
    concurrency,
    max_bandwidth,
    read_timeout,
    as_json,
    quiet,
    dry_run,
) -> None:
    """Upload files or folders to DEST (s3://bucket/prefix or s3://bucket/key).

    Large files go up in parts, in parallel, and survive the process dying: run the same command again and
    only the missing parts are sent (each re-checked against the file first). Unchanged files (same SHA-256)
    are skipped. A file that changes while it uploads fails with "source changed during upload" and is never
    stored with a checksum that does not match its bytes. A single folder uploads its contents under DEST;
    several sources each go under DEST/<name>/.
    """
    target = ObjectURI.parse(dest)
    for source in sources:
        if is_remote(source):
            raise UsageError(f"upload takes local sources; for {source} use `jobsub download`")

    client = app.client(concurrency=concurrency, read_timeout=read_timeout)  # its store opens on first use

    def action(subscribers):
        return client.upload(
            list(sources), target, part_size=part_size, max_bandwidth=max_bandwidth, subscribers=subscribers
        )

    if dry_run:
        from jobsub.cli.upload_plan import print_upload_plan

        print_upload_plan(client, list(sources), target, part_size, as_json)
        return
    run_transfer(app, "upload", quiet, as_json, action)


@click.command("download")
@click.argument("source")
@click.argument("dest", type=click.Path())
@with_transfer_options
@click.option(
    "--skip-unsafe", is_flag=True, help="Refused unsafe keys are warnings (exit 0) instead of a failure (exit 1)."
)
@pass_app
def download_command(
    app: App,
    source: str,
    dest: str,
    part_size,
    concurrency,
    max_bandwidth,
    read_timeout,
    as_json,
    quiet,
    skip_unsafe,
) -> None:
    """Download an object or every object under a prefix (or a job's outputs) into DEST.

    SOURCE is s3://bucket/key, s3://bucket/prefix/ or a job id. Parallel ranged reads, resumable, renamed
    into place only when complete and verified: by jobsub's SHA-256, else a checksum the server returns
    (CRC32/CRC32C/CRC64NVME/SHA-256, or a single-part MD5 ETag), else by size only (said per file; such a
    file is always downloaded again, never "unchanged"). Keys that would land outside DEST ('..', absolute,
    empty segments) are refused: the command exits 1 with their count unless --skip-unsafe.
    """
    uri = ObjectURI.parse(source) if is_remote(source) else app.client().job(source, check=False).outputs_uri()
    client = app.client(concurrency=concurrency, read_timeout=read_timeout)  # its store opens on first use

    def action(subscribers):
        return client.download(uri, dest, part_size=part_size, max_bandwidth=max_bandwidth, subscribers=subscribers)

    run_transfer(app, "download", quiet, as_json, action, skip_unsafe=skip_unsafe)


@click.group("uploads")
def uploads_command() -> None:
    """Pending multipart uploads: what a resume would continue, and their clean-up."""


@uploads_command.command("list")
@click.argument("uri", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def uploads_list(app: App, uri: str | None, as_json: bool) -> None:
    """List pending uploads in s3://bucket[/prefix] (default: the buckets this machine has journals for)."""
    rows = app.client().pending_uploads(uri)
    if as_json:
        print_json([row.model_dump(mode="json") for row in rows])
        return
    if not rows:
        click.echo("no pending uploads")
        return
    from rich.table import Table

    table = Table("upload id", "destination", "age", "done", "source", box=None)
    for row in rows:
        done = f"{row.percent_done:.0f}%" if row.percent_done is not None else "?"
        cells = (row.upload_id, row.uri, human_duration(row.age_seconds), done, row.source or "-")
        table.add_row(*(markup(cell) for cell in cells))  # ids and keys come from the server: text, not markup
    app.out.print(table)


@uploads_command.command("abort")
@click.argument("upload_id", required=False)
@click.option("--all", "abort_all", is_flag=True, help="Abort every pending upload under URI.")
@click.option("--older-than", help="With --all: only uploads started longer ago than this (e.g. 7d, 12h).")
@click.option("--uri", help="s3://bucket[/prefix] to look in (needed when no local journal knows the id).")
@pass_app
def uploads_abort(app: App, upload_id: str | None, abort_all: bool, older_than: str | None, uri: str | None) -> None:
    """Abort a pending upload (its parts are deleted on the server) and forget its journal."""
    if bool(upload_id) == abort_all:
        raise UsageError("give an UPLOAD_ID or --all (see `jobsub uploads list`)")
    client = app.client()
    rows = client.pending_uploads(uri)
    if abort_all:
        min_age = parse_duration(older_than) if older_than else 0
        chosen = [r for r in rows if (r.age_seconds or 0) >= min_age]
    else:
        chosen = [r for r in rows if r.upload_id == upload_id]
        if not chosen:
            raise UsageError(f"no pending upload {upload_id}; pass --uri s3://bucket if no local journal knows it")
    for row in chosen:
        client.abort_upload(row)
        click.echo(plain(f"aborted {row.upload_id} ({row.uri})"))
    if not chosen:
        click.echo("nothing to abort")


@click.command("ls")
@click.argument("uri", required=False)
@click.option("--recursive", "-r", is_flag=True, help="List every object under the prefix, not just one level.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def ls_command(app: App, uri: str | None, recursive: bool, as_json: bool) -> None:
    """List buckets, or the objects and prefixes under s3://bucket/prefix."""
    client = app.client()
    if not uri:
        buckets = client.buckets()
        if as_json:
            print_json(buckets)
        else:
            for bucket in buckets:
                click.echo(plain(f"s3://{bucket}/"))
        return
    target = ObjectURI.parse(uri)
    listing = client.ls(target, recursive)
    objects, prefixes = listing.objects, listing.prefixes
    if as_json:
        print_json(
            [{"key": p, "prefix": True} for p in prefixes]
            + [{"key": o.key, "size": o.size, "etag": o.etag, "last_modified": o.last_modified} for o in objects]
        )
        return
    for prefix in prefixes:
        click.echo(plain(f"{'':>19} {'PRE':>10}  s3://{target.bucket}/{prefix}"))  # keys: anyone's text
    for obj in objects:
        when = obj.last_modified.strftime("%Y-%m-%d %H:%M:%S") if obj.last_modified else ""
        click.echo(plain(f"{when:>19} {human_size(obj.size):>10}  s3://{target.bucket}/{obj.key}"))


@click.command("rm")
@click.argument("uri")
@click.option(
    "--recursive", "-r", is_flag=True, help="Delete the folder URI/ (every object under URI/) and the object URI."
)
@click.option("--dry-run", "-n", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_app
def rm_command(app: App, uri: str, recursive: bool, dry_run: bool, yes: bool) -> None:
    """Delete an object, or with --recursive the folder URI/ (asks first unless --yes).

    \b
    rm -r s3://b/runs/data    deletes s3://b/runs/data and s3://b/runs/data/...
                              never s3://b/runs/data2/... or s3://b/runs/database.csv
    """
    target = ObjectURI.parse(uri)
    client = app.client()
    if recursive:
        keys = client.folder_keys(target)
    else:
        if target.is_prefix:
            raise UsageError(f"{uri} is a prefix: add --recursive to delete everything under it")
        if client.head(target) is None:
            raise UsageError(f"no object {uri}")
        keys = [target.key]
    if not keys:
        click.echo("nothing to delete")
        return
    if dry_run:
        for key in keys:
            click.echo(plain(f"would delete s3://{target.bucket}/{key}"))
        click.echo(f"would delete {len(keys)} object(s)")
        return
    if recursive and not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to delete {len(keys)} object(s) without a terminal to confirm: add --yes")
        click.confirm(f"delete {len(keys)} object(s) under {uri}?", abort=True)
    click.echo(f"deleted {client.delete(target.bucket, keys)} object(s)")
