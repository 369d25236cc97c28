"""Data-parallel helpers: who am I (rank / world size from torchrun's variables), the one process that writes
results, the process group for code that runs outside transformers' Trainer (evaluate, predict), the global
batch split over processes, and a training throughput meter.

torchrun starts one copy of `python -m train_entry ...` per GPU (or per CPU process) with RANK, WORLD_SIZE,
LOCAL_RANK set; the Trainer then wraps the model in DistributedDataParallel by itself. Everything here
works unchanged with one process and no torchrun (rank 0 of 1).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def nodes() -> int:
    """Nodes of the run: torchrun's GROUP_WORLD_SIZE (one launcher per node), else 1."""
    return int(os.environ.get("GROUP_WORLD_SIZE", os.environ.get("JOBSUB_NNODES", "1")))


def is_main() -> bool:
    """The one process that writes metrics, plots, predictions, the model and metric lines."""
    return rank() == 0


def say(message: str) -> None:
    """A progress line from rank 0 only: the same line from every rank would only repeat itself in the log."""
    if is_main():
        print(message, flush=True)


def rank_note(message: str) -> None:
    """A line every rank writes to stderr (torchrun prefixes it with the rank when there are several)."""
    print(f"rank {rank()}/{world_size()}: {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its launcher dies. torchrun starts workers in their own sessions,
    so a SIGKILL to the job's process group (cancel after the grace period, the OOM killer) would otherwise
    leave them training on as orphans."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the launcher already died between fork and here
        os._exit(1)


def setup() -> None:
    """Join the process group when started by torchrun with more than one process (gloo on the CPU, NCCL on
    GPUs, each process on the GPU of its local rank). The Trainer reuses the group; evaluate and predict
    shard their inference over it."""
    if "TORCHELASTIC_RUN_ID" in os.environ or "TORCHELASTIC_RESTART_COUNT" in os.environ:
        _die_with_parent()
    if world_size() <= 1:
        return
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl")
    else:
        dist.init_process_group("gloo")


def active() -> bool:
    if world_size() <= 1:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def gather(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on every rank ([value] with one process)."""
    if not active():
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def teardown() -> None:
    if active():
        import torch.distributed as dist

        dist.destroy_process_group()


def device():
    """This process's device: its local GPU, or the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", local_rank() if world_size() > 1 else torch.cuda.current_device())
    return torch.device("cpu")


@dataclass(frozen=True)
class BatchPlan:
    """How the spec's global batch (per optimizer step) is split: processes x per-device x accumulation."""

    requested: int
    processes: int
    per_device: int
    accumulation: int

    @property
    def global_batch(self) -> int:
        return self.processes * self.per_device * self.accumulation

    def describe(self) -> str:
        accumulate = f" x {self.accumulation} accumulation steps" if self.accumulation > 1 else ""
        line = (
            f"batch: {self.processes} process{'es' if self.processes != 1 else ''} x {self.per_device}"
            f"{accumulate} = {self.global_batch} per step"
        )
        if self.global_batch != self.requested:
            line += f" (asked for {self.requested}: not a multiple of {self.processes * self.accumulation})"
        return line


def plan_batch(global_batch: int, processes: int, max_device_batch: int | None = None) -> BatchPlan:
    """Keep the global batch whatever the process count, so learning rate, step count and checkpoints mean
    the same with 1 or 8 processes. With `max_device_batch` (what fits in one device's memory), gradient
    accumulation makes up the rest: the smallest accumulation whose micro-batch fits and divides evenly."""
    if global_batch < 1 or processes < 1:
        raise ValueError(f"batch size and process count must be at least 1 (got {global_batch}, {processes})")
    cap = max_device_batch if max_device_batch and max_device_batch > 0 else global_batch
    share = max(1, global_batch // processes)
    for accumulation in range(1, share + 1):
        per_device, rest = divmod(share, accumulation)
        if rest == 0 and per_device <= cap and per_device * accumulation * processes == global_batch:
            return BatchPlan(global_batch, processes, per_device, accumulation)
    # no exact split: the largest global batch not above the request (never a silent larger one)
    accumulation = -(-share // cap)
    return BatchPlan(global_batch, processes, max(1, share // accumulation), accumulation)


class ThroughputMeter:
    """Counts the samples and (non-padding) tokens this process trained on, from a forward pre-hook on the
    model: micro-batches of gradient accumulation count, evaluation forwards (model.eval()) do not, and
    batches skipped on --resume are never forwarded, so they do not count either."""

    def __init__(self, model) -> None:
        self.samples = 0
        self.tokens = 0
        self._handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        if not module.training:
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        self.samples += int(ids.shape[0])
        mask = kwargs.get("attention_mask")
        self.tokens += int(mask.sum()) if mask is not None else int(ids.numel())

    def close(self) -> None:
        self._handle.remove()

    def summary(self, seconds: float) -> dict[str, Any]:
        """Totals over all ranks (a collective: every rank calls it), with per-second rates."""
        per_rank = gather((self.samples, self.tokens))
        samples = sum(s for s, _ in per_rank)
        tokens = sum(t for _, t in per_rank)
        return {
            "processes": world_size(),
            "nodes": nodes(),
            "throughput_seconds": round(seconds, 2),  # training time without the evaluations inside it
            "train_samples": samples,
            "train_tokens": tokens,
            "train_samples_per_second": round(samples / seconds, 2) if seconds > 0 else 0.0,
            "train_tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else 0.0,
            "per_rank_samples": [s for s, _ in per_rank],
        }
