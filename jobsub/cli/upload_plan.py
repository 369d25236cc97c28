"""`jobsub upload --dry-run`: print the transfer plan the upload would carry out, and send nothing.

Kept beside transfer_cmds.py (not in it) so the upload command only gains one option and one branch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from jobsub.cli.app import print_json
from jobsub.units import human_size
from jobsub.uri import ObjectURI

if TYPE_CHECKING:
    from jobsub.api import Client


def _shown(name: str) -> str:
    """A file name or key as a terminal may show it: control characters (ESC, BEL, newlines) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def print_upload_plan(
    client: Client, sources: list[str | Path], target: ObjectURI, part_size: int | None, as_json: bool
) -> None:
    """Plan the upload with read-only requests (HEAD, ListParts) through the API and print it: a table, or
    JSON with --json."""
    plan = client.plan_upload(sources, target, part_size=part_size)
    if as_json:
        print_json(plan.as_dict())
        return
    for file in plan.files:
        parts = (
            f", parts {file.parts_to_send} to send / {len(file.reused)} reused" if file.action == "multipart" else ""
        )
        where = _shown(f"{file.source} -> s3://{file.bucket}/{file.key}")
        click.echo(
            f"{file.action:9} {where} ({human_size(file.size)}; "
            f"{_shown(file.reason)}{parts}; {human_size(file.bytes_to_send)} to send, {file.requests} requests)"
        )
    totals = plan.totals()
    click.echo(
        f"plan: {totals['files_to_send']} of {totals['files']} files to send ({totals['files_unchanged']} unchanged), "
        f"{human_size(totals['bytes_to_send'])} of {human_size(totals['bytes_total'])}, "
        f"{totals['parts_to_send']} parts to send, {totals['parts_reused']} reused, {totals['requests']} requests; "
        "dry run: nothing was sent"
    )
