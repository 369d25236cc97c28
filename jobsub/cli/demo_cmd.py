"""jobsub demo: the whole workflow on the default profile, with nothing configured."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from jobsub.cli.app import App, pass_app
from jobsub.cli.progress import progress_for
from jobsub.transfer import TransferManager
from jobsub.uri import ObjectURI


@click.command("demo")
@pass_app
def demo_command(app: App) -> None:
    """Round-trip a generated checkpoint through the object store with progress and verification."""
    import os

    work = Path(tempfile.mkdtemp(prefix="jobsub-demo-"))
    ckpt = work / "ckpt"
    ckpt.mkdir()
    (ckpt / "model.bin").write_bytes(os.urandom(24 << 20))
    (ckpt / "config.json").write_text('{"demo": true}\n')
    dest = ObjectURI.parse("s3://jobsub-demo/ckpt/")
    click.echo(f"profile {app.profile_name}: {app.store.description}")
    subscribers, context = progress_for("upload", app.console, False)
    with context:
        TransferManager(app.store, subscribers=subscribers).upload([ckpt], dest)
    subscribers, context = progress_for("download", app.console, False)
    with context:
        TransferManager(app.store, subscribers=subscribers).download(dest, work / "back")
    same = (work / "back" / "model.bin").read_bytes() == (ckpt / "model.bin").read_bytes()
    click.echo(f"round trip {'verified' if same else 'FAILED'}: {work / 'back'}")
