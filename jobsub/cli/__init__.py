"""The jobsub command line: thin click commands over the services (transfer engine, jobs, profiles).

Conventions: exit 0 ok, 1 failure, 2 usage, 130 interrupted; one-line errors unless --debug; --json where a
script wants it; rich output on a terminal and plain lines when piped.
"""

from __future__ import annotations

import atexit
import gc
import sys
import traceback
from typing import ClassVar

import click

from jobsub import __version__
from jobsub.cli.app import App, error_line, setup_logging
from jobsub.errors import JobsubError
from jobsub.redact import redact


class _LazyGroup(click.Group):
    """Commands live in their own modules, imported only when used, so `jobsub --help` stays fast."""

    _modules: ClassVar[dict[str, str]] = {
        "upload": "transfer_cmds",
        "download": "transfer_cmds",
        "uploads": "transfer_cmds",
        "ls": "transfer_cmds",
        "rm": "transfer_cmds",
        "profile": "profile_cmds",
        "submit": "job_cmds",
        "status": "job_cmds",
        "jobs": "job_cmds",
        "cancel": "job_cmds",
        "logs": "job_cmds",
        "results": "job_cmds",
        "templates": "job_cmds",
        "demo": "demo_cmd",
        "image": "image_cmds",
        "cost": "cost_cmds",
        "ui": "ui_cmd",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._modules)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = self._modules.get(name)
        if module is None:
            return None
        from importlib import import_module

        return getattr(import_module(f"jobsub.cli.{module}"), name.replace("-", "_") + "_command")


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--profile", "profile", envvar="JOBSUB_PROFILE", help="Profile to use (default: the current one).")
@click.option("--debug", is_flag=True, help="Show tracebacks and request logs (credentials are redacted).")
@click.version_option(__version__, prog_name="jobsub")
@click.pass_context
def cli(ctx: click.Context, profile: str | None, debug: bool) -> None:
    """Move checkpoints and data to S3-compatible storage and run ML jobs on them.

    \b
    Quick tour:
      jobsub upload ./ckpt s3://bucket/models/ckpt      resumable multipart upload with progress
      jobsub download s3://bucket/models/ckpt ./ckpt    parallel ranged download, verified
      jobsub submit bert-finetune --input data=./tnews  run a job; follow it with `jobsub logs -f`
      jobsub demo                                       the whole workflow on this machine

    With nothing configured the `default` profile keeps objects in a local folder and runs jobs on this
    machine. Add an S3 endpoint with `jobsub profile add NAME --storage s3 --endpoint-url URL`.
    """
    setup_logging(debug)
    ctx.obj = App(profile_option=profile, debug=debug)


def _limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each transfer thread its own malloc arena, and freed part-sized buffers stay in them:
    with 8 workers that is ~70 MB of RSS doing nothing. Two arenas keep memory flat (Linux/glibc only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> None:
    _limit_malloc_arenas()
    if argv is None:  # a jobsub process, not a caller of main(): its exit is what `submit` keeps a user waiting on
        # the interpreter's last garbage collection walks every object botocore, pydantic and the docker SDK
        # made (0.5-1 s of CPU on a busy 2-core machine: docs/performance.md, "Start latency"); an exiting
        # process need not free them. atexit runs before that collection; files close and flush as before.
        atexit.register(gc.freeze)
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="jobsub", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError | click.BadParameter) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except JobsubError as exc:
        if debug:
            click.echo(redact(traceback.format_exc()), err=True)
        error_line(str(exc))
        sys.exit(exc.exit_code)
    except Exception as exc:  # an unexpected bug: still one line unless --debug
        if debug:
            click.echo(redact(traceback.format_exc()), err=True)
        error_line(f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)")
        sys.exit(1)
    sys.exit(0)
