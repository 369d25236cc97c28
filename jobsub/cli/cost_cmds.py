"""`jobsub cost`: the bill before the cloud sends it — compute of recent jobs plus the storage kept."""

from __future__ import annotations

import click

from jobsub.cli.app import App, pass_app, print_json
from jobsub.costs import money
from jobsub.units import human_duration, human_size, parse_duration


@click.command("cost")
@click.option("--since", default="30d", show_default=True, help="Jobs started in this period (e.g. 7d, 12h; 0 = all).")
@click.option("--prefix", metavar="URI", help="Storage to count (default: the whole bucket of the profile's jobs).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def cost_command(app: App, since: str, prefix: str | None, as_json: bool) -> None:
    """Add up the compute cost of jobs and the monthly cost of stored objects, from the profile's price table.

    \b
    The prices are yours: [profiles.NAME.prices] in the config file (see docs/costs.md). With no table,
    every price is zero and the figures say so ("price table 'none'").
    """
    seconds = parse_duration(since) if since not in ("0", "") else None
    bill = app.client().cost(seconds, prefix)
    if as_json:
        print_json(bill.model_dump(mode="json"))
        return
    currency = bill.currency
    period = f"the last {human_duration(seconds)}" if seconds else "all time"
    click.echo(f"price table {bill.table!r}" + (f" ({bill.source})" if bill.source else ""))
    if app.profile.prices.is_zero:  # by the prices, not the table's name: a table called "none" may hold prices
        click.echo("  (no prices set: add [profiles.NAME.prices] to the config to see real figures)")
    click.echo(f"jobs, {period}: {len(bill.jobs)}, compute {money(bill.compute, currency)}")
    for job in bill.jobs[:20]:
        duration = human_duration(job.duration_seconds) if job.duration_seconds is not None else "-"
        click.echo(f"  {job.id:<48} {job.state.value:<10} {duration:>8}  {money(job.cost.compute, job.cost.currency)}")
    if len(bill.jobs) > 20:
        click.echo(f"  ... and {len(bill.jobs) - 20} more (--json lists all)")
    storage = bill.storage
    click.echo(
        f"storage {storage.prefix}: {storage.objects} objects, {human_size(storage.bytes)}, "
        f"{money(storage.per_month, currency)} per month"
    )
    click.echo(f"total: {money(bill.total, currency)} (compute of the period + one month of storage)")
