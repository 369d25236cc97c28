"""Cost: a price table per profile, the estimate at submit, the actual cost of a job, and the storage kept.

The price table is the user's (``[profiles.NAME.prices]`` in the config TOML); jobsub ships no prices of
its own. The built-in default is all zeros and is called "none", so a figure can never pass for a quote:
every amount jobsub prints says which table it came from.

Compute is priced per hour from the job's resources (CPU cores, memory GiB, GPUs, or a named flavor);
storage per GiB-month; requests per 1,000; egress per GiB. The estimate gives an upper bound (the spec's
`timeout`) and, when earlier runs of the same template with the same resources finished, their median.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator, model_validator

from jobsub.units import human_size

GIB = 1 << 30
SECONDS_PER_MONTH = 30 * 24 * 3600


def finite_price(value: float) -> float:
    """A price as a table may hold it: a finite number >= 0 (NaN or inf would make every estimate a lie)."""
    if not math.isfinite(value) or value < 0:
        raise ValueError("a price is a finite number >= 0")
    return value


class Flavor(BaseModel):
    """A named instance flavor: its price per hour and what it holds, so a spec cannot ask for more than the
    flavor it is billed as (a cheap flavor cannot carry 8 GPUs)."""

    model_config = ConfigDict(extra="forbid")

    price: float = Field(description="per hour, all resources included")
    cpus: float = Field(gt=0, description="CPU cores the flavor holds")
    memory: str = Field(description="memory the flavor holds, e.g. 16GiB")
    gpus: int = Field(default=0, ge=0, description="GPUs the flavor holds")

    @field_validator("price")
    @classmethod
    def _price(cls, value: float) -> float:
        return finite_price(value)

    @field_validator("cpus")
    @classmethod
    def _cpus(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("cpus is a finite number > 0")
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        from jobsub.errors import UsageError
        from jobsub.units import parse_size

        try:
            parse_size(value)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def memory_bytes(self) -> int:
        from jobsub.units import parse_size

        return parse_size(self.memory)

    def holds(self) -> str:
        gpus = f", {self.gpus} GPU{'s' if self.gpus != 1 else ''}"
        return f"{self.cpus:g} CPUs{gpus}, {self.memory} memory"


class Prices(BaseModel):
    """A price table. Every price is >= 0 and finite; unknown keys are an error naming the key."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(default="none", description="the table's name, shown beside every figure")
    source: str = Field(default="", description="where the prices come from, with its date")
    currency: str = "USD"
    cpu_core_hour: float = 0.0
    memory_gib_hour: float = 0.0
    gpu_hour: float = 0.0
    #: named instance flavors: {price, cpus, memory, gpus} (a bare number is a price that states no capacity:
    #: it only carries specs that ask for no cpus, memory or GPUs); `resources.flavor` picks one
    flavors: dict[str, Flavor | float] = Field(default_factory=dict)
    storage_gib_month: float = 0.0
    requests_per_1000: float = 0.0
    egress_gib: float = 0.0

    @field_validator(
        "cpu_core_hour", "memory_gib_hour", "gpu_hour", "storage_gib_month", "requests_per_1000", "egress_gib"
    )
    @classmethod
    def _price(cls, value: float) -> float:
        return finite_price(value)

    @field_validator("flavors")
    @classmethod
    def _flavors(cls, value: dict[str, Flavor | float]) -> dict[str, Flavor | float]:
        for name, flavor in value.items():
            price = flavor.price if isinstance(flavor, Flavor) else flavor
            if not math.isfinite(price) or price < 0:
                raise ValueError(f"flavor {name}: a price is a finite number >= 0")
        return value

    def flavor_price(self, name: str) -> float:
        flavor = self.flavors[name]
        return flavor.price if isinstance(flavor, Flavor) else float(flavor)

    @property
    def is_zero(self) -> bool:
        """True when every price is zero: then no figure means anything, whatever the table is called."""
        return not any(
            (self.cpu_core_hour, self.memory_gib_hour, self.gpu_hour, self.storage_gib_month, self.requests_per_1000)
        ) and not any(self.flavor_price(name) for name in self.flavors)

    def label(self) -> str:
        return f"price table {self.table!r}" + (f" ({self.source})" if self.source else "")


def money(amount: float | None, currency: str) -> str:
    if amount is None:
        return "unbounded"
    return f"{amount:.4f} {currency}" if 0 < amount < 0.01 else f"{amount:.2f} {currency}"


def flavor_problem(prices: Prices, name: str, cpus: float | None, memory_bytes: int | None, gpus: int) -> str | None:
    """Why a spec asking for these resources cannot be billed as flavor ``name``, or None when it can."""
    flavor = prices.flavors.get(name)
    if flavor is None:
        known = ", ".join(sorted(prices.flavors)) or "none in this table"
        return f"flavor {name!r} has no price in {prices.label()}; known flavors: {known}"
    if not isinstance(flavor, Flavor):
        asked = [what for what, value in (("cpus", cpus), ("memory", memory_bytes), ("gpus", gpus)) if value]
        if asked:
            return (
                f"flavor {name!r} in {prices.label()} states only its price, so resources.{asked[0]} cannot be "
                f"checked against it; say what it holds: [prices.flavors.{name!r}] price, cpus, memory, gpus"
            )
        return None
    over = []
    if cpus is not None and cpus > flavor.cpus:
        over.append(f"cpus {cpus:g}")
    if gpus > flavor.gpus:
        over.append(f"gpus {gpus}")
    if memory_bytes is not None and memory_bytes > flavor.memory_bytes:
        over.append(f"memory {human_size(memory_bytes)}")
    if over:
        return (
            f"resources ask for {', '.join(over)}, more than flavor {name!r} holds ({flavor.holds()}); "
            f"pick a larger flavor or ask for less"
        )
    return None


def hourly_rate(prices: Prices, cpus: float | None, memory_bytes: int | None, gpus: int, flavor: str | None) -> float:
    """The compute price per hour of a job's resources. A job with no cpus set is priced as one core; a job
    on a flavor is priced as the flavor, once its resources are known to fit in it."""
    if flavor:
        problem = flavor_problem(prices, flavor, cpus, memory_bytes, gpus)
        if problem:
            from jobsub.errors import SpecError

            raise SpecError(problem)
        return prices.flavor_price(flavor)
    memory_gib = (memory_bytes or 0) / GIB
    return (cpus or 1.0) * prices.cpu_core_hour + memory_gib * prices.memory_gib_hour + gpus * prices.gpu_hour


def storage_cost(prices: Prices, stored_bytes: int, seconds: float = SECONDS_PER_MONTH) -> float:
    return stored_bytes / GIB * prices.storage_gib_month * (seconds / SECONDS_PER_MONTH)


def requests_cost(prices: Prices, count: int) -> float:
    return count / 1000 * prices.requests_per_1000


class Estimate(BaseModel):
    """What a job will cost, before it runs: printed by ``submit`` (``--dry-run --json`` shows it as is) and
    kept in job.json under ``cost.estimate``.

    ``upper`` is computed, yet dumped, so the JSON keeps the "upper" key readers of today's records expect; a
    stored "upper" is dropped on read and computed again from the parts (a record cannot claim a bound its parts
    do not add up to). ``extra="allow"``: a field a newer jobsub adds survives a rewrite of the record.
    """

    model_config = ConfigDict(extra="allow")

    currency: str
    table: str
    rate_per_hour: float
    compute_upper: float | None = Field(description="None: no timeout, so no upper bound")
    compute_typical: float | None = Field(description="median of earlier runs, when there are any")
    typical_seconds: float | None
    runs_seen: int
    upload_bytes: int
    storage_month: float
    requests: int
    requests_cost: float

    @model_validator(mode="before")
    @classmethod
    def _drop_stored_upper(cls, data: Any) -> Any:
        if isinstance(data, dict) and "upper" in data:
            return {key: value for key, value in data.items() if key != "upper"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def upper(self) -> float | None:
        if self.compute_upper is None:
            return None
        return self.compute_upper + self.storage_month + self.requests_cost

    def as_dict(self) -> dict[str, Any]:
        """The JSON form, for a caller that writes it out itself (CostRecord takes the model and reads a stored
        dict back as one)."""
        return self.model_dump(mode="json")

    def line(self) -> str:
        """One line for the submit message: 'estimate: at most 1.20 USD (compute 1.00 for 2h at 0.50/h ...)'."""
        parts = [f"compute {money(self.compute_upper, self.currency)} at {self.rate_per_hour:g}/h (timeout bound)"]
        if self.compute_typical is not None:
            parts.append(f"typical {money(self.compute_typical, self.currency)} (median of {self.runs_seen} runs)")
        parts.append(
            f"storage {money(self.storage_month, self.currency)}/month for {human_size(self.upload_bytes)} uploaded"
        )
        parts.append(f"requests {money(self.requests_cost, self.currency)} ({self.requests})")
        head = (
            "at most " + money(self.upper, self.currency) if self.upper is not None else "no upper bound (no timeout)"
        )
        return f"estimate: {head}; " + "; ".join(parts) + f" [{self.table}]"


def estimate(
    prices: Prices,
    rate_per_hour: float,
    timeout_seconds: float | None,
    earlier_durations: list[float],
    upload_bytes: int,
    requests: int,
) -> Estimate:
    import statistics  # here: only an estimate needs it, and the runtime imports this module

    typical_seconds = statistics.median(earlier_durations) if earlier_durations else None
    return Estimate(
        currency=prices.currency,
        table=prices.table,
        rate_per_hour=rate_per_hour,
        compute_upper=rate_per_hour * timeout_seconds / 3600 if timeout_seconds is not None else None,
        compute_typical=rate_per_hour * typical_seconds / 3600 if typical_seconds is not None else None,
        typical_seconds=typical_seconds,
        runs_seen=len(earlier_durations),
        upload_bytes=upload_bytes,
        storage_month=storage_cost(prices, upload_bytes),
        requests=requests,
        requests_cost=requests_cost(prices, requests),
    )


def compute_cost(rate_per_hour: float, seconds: float | None) -> float:
    return rate_per_hour * (seconds or 0.0) / 3600


def cost_limit_reached(rate_per_hour: float, seconds: float, max_cost: float | None) -> bool:
    """The runtime stops a job whose running compute cost reaches its --max-cost (like a timeout)."""
    return max_cost is not None and rate_per_hour > 0 and compute_cost(rate_per_hour, seconds) >= max_cost
