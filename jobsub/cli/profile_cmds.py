"""profile add/list/show/use/remove: named storage + executor configurations, never secrets."""

from __future__ import annotations

import click

from jobsub.cli.app import App, pass_app, print_json
from jobsub.cli.docker_options import docker_options, docker_settings
from jobsub.cli.modelarts_options import modelarts_options, modelarts_settings
from jobsub.cli.slurm_options import slurm_options, slurm_settings
from jobsub.config import (
    DEFAULT_PROFILE,
    Config,
    Profile,
    config_file,
    first_problem,
    load_config,
    resolve_profile,
    update_config,
)
from jobsub.errors import ConfigError


@click.group("profile")
def profile_command() -> None:
    """Named configurations: where objects are stored and where jobs run."""


@profile_command.command("add")
@click.argument("name")
@click.option("--storage", type=click.Choice(["local", "s3"]), required=True)
@click.option("--endpoint-url", help="S3-compatible endpoint, e.g. https://obs.cn-north-4.myhuaweicloud.com")
@click.option("--region")
@click.option(
    "--addressing-style",
    type=click.Choice(["auto", "path", "virtual"]),
    default="auto",
    show_default=True,
    help="path for MinIO, Ceph and most self-hosted servers",
)
@click.option("--aws-profile", help="Credentials from this ~/.aws profile (jobsub never stores a secret).")
@click.option("--root", type=click.Path(), help="local storage: the folder that holds the buckets")
@click.option("--jobs-uri", default="s3://jobsub/jobs/", show_default=True, help="Where job records are kept.")
@click.option(
    "--checksum",
    type=click.Choice(["auto", "md5", "crc32", "crc32c", "crc64nvme", "sha256"]),
    default="auto",
    show_default=True,
    help=(
        "Per-part checksum sent to the server (auto: CRC32 on AWS; elsewhere a signed SHA-256 where the server "
        "verifies it, else MD5)."
    ),
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds without a reply before a request fails (raise it for slow links).",
)
@click.option(
    "--shared-store",
    is_flag=True,
    help="local storage: make new store folders group-readable/writable (default: private to you).",
)
@click.option(
    "--executor", default="local", show_default=True, help="Where jobs run: local, docker, slurm, ray, modelarts."
)
@slurm_options
@docker_options
@modelarts_options
@click.option("--ray-address", help="ray executor: the cluster's dashboard, e.g. http://head:8265")
@click.option("--use", "make_current", is_flag=True, help="Also make it the current profile.")
def profile_add(
    name,
    storage,
    endpoint_url,
    region,
    addressing_style,
    aws_profile,
    root,
    jobs_uri,
    executor,
    checksum,
    read_timeout,
    shared_store,
    ray_address,
    make_current,
    **more,
):
    """Add (or replace) profile NAME.

    Endpoint URLs never carry credentials (user:password@ is refused): S3 credentials come from the AWS
    credential chain (environment, ~/.aws, --aws-profile).
    """
    from pydantic import ValidationError

    try:
        profile = Profile(
            storage=storage,
            endpoint_url=endpoint_url,
            region=region,
            addressing_style=addressing_style,
            aws_profile=aws_profile,
            root=root,
            jobs_uri=jobs_uri,
            executor=executor,
            checksum=checksum,
            read_timeout=read_timeout,
            shared_store=shared_store,
            slurm=slurm_settings(executor, more),
            docker=docker_settings(executor, more),
            ray={"address": ray_address} if ray_address else {},
            modelarts=modelarts_settings(executor, more),
        )
    except ValidationError as exc:
        raise ConfigError(f"profile {name}: {first_problem(exc)}") from None

    def change(config: Config) -> None:
        config.profiles[name] = profile
        if make_current:
            config.current = name

    path = update_config(change)
    click.echo(f"saved profile {name} in {path}" + (" (now current)" if make_current else ""))


@profile_command.command("list")
@click.option("--json", "as_json", is_flag=True)
def profile_list(as_json: bool) -> None:
    """List profiles; the current one is marked with *."""
    config = load_config()
    profiles = dict(config.profiles)
    profiles.setdefault(DEFAULT_PROFILE, Profile())
    if as_json:
        print_json({"current": config.current, "profiles": {k: v.shown() for k, v in profiles.items()}})
        return
    for name, profile in sorted(profiles.items()):
        mark = "*" if name == config.current else " "
        where = profile.effective_endpoint() or "AWS S3" if profile.storage == "s3" else str(profile.local_root())
        click.echo(f"{mark} {name:<16} {profile.storage:<6} {where}")


@profile_command.command("show")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def profile_show(app: App, name: str | None, as_json: bool) -> None:
    """Show a profile (default: the one in use)."""
    resolved_name, profile = resolve_profile(name or app.profile_option)
    data = profile.shown()
    if profile.storage == "local":
        data["root"] = str(profile.local_root())
    else:
        data["endpoint_url"] = profile.effective_endpoint()
    if as_json:
        print_json({"name": resolved_name, **data})
        return
    click.echo(f"profile {resolved_name} ({config_file()})")
    for key, value in data.items():
        if value is not None:
            click.echo(f"  {key}: {value}")


@profile_command.command("use")
@click.argument("name")
def profile_use(name: str) -> None:
    """Make NAME the current profile."""

    def change(config: Config) -> None:
        resolve_profile(name, config)
        config.current = name

    update_config(change)
    click.echo(f"current profile: {name}")


@profile_command.command("remove")
@click.argument("name")
def profile_remove(name: str) -> None:
    """Remove profile NAME."""

    def change(config: Config) -> None:
        if name not in config.profiles:
            raise ConfigError(f"no profile named {name!r}")
        del config.profiles[name]
        if config.current == name:
            config.current = DEFAULT_PROFILE

    update_config(change)
    click.echo(f"removed profile {name}")
