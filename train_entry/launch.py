"""python -m train_entry.launch [--processes auto|N] COMMAND ARGS... — run `python -m train_entry COMMAND ARGS`
with one process per GPU through torchrun, or as one plain process where that is all there is to use.

What the BERT job templates run. The process count comes from the job: the runtime sets JOBSUB_NPROC
(resources.gpus per node, else 1), JOBSUB_NNODES (resources.nodes), JOBSUB_NODE_RANK, MASTER_ADDR and
MASTER_PORT (see jobsub/runtime/launch_env.py and docs/architecture.md for the multi-node contract).

- `auto`: one process per GPU asked for (JOBSUB_NPROC) and visible; one process on a CPU-only machine.
- `N`: exactly N processes: N GPUs, or N gloo processes on the CPU (how a CPU job asks for data parallelism).
- One process on one node: no torchrun at all (no process group, no rendezvous port).
- Several: torchrun (`python -m torch.distributed.run`), `--standalone` on one node (it picks a free port, so
  two jobs on one machine never collide), static rendezvous at MASTER_ADDR:MASTER_PORT across nodes
  (node rank 0 hosts it and holds global rank 0, the writer). Every rank's output reaches the job log
  prefixed with `[rankN]:` (torchrun's --tee with a line-prefix template).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping

#: The commands that share their work over processes; the others (init, the MindSpore converters) write one
#: folder and always run as one process.
DATA_PARALLEL_COMMANDS = frozenset({"finetune", "evaluate", "predict", "pretrain"})


class LaunchError(Exception):
    """A setting the user must fix; one line, exit code 2."""


def resolve_processes(requested: str, environ: Mapping[str, str], gpus_visible: int) -> tuple[int, str]:
    """(processes per node, why) from --processes, the job's JOBSUB_NPROC and the GPUs this node sees."""
    wanted_text = environ.get("JOBSUB_NPROC", "").strip()
    if requested.strip().lower() in ("", "auto"):
        wanted = int(wanted_text) if wanted_text.isdigit() and int(wanted_text) > 0 else None
        if gpus_visible == 0:
            if wanted and wanted > 1:
                return 1, f"{wanted} GPUs asked for but none visible: one process on the CPU"
            return 1, "no GPU: one process on the CPU"
        if wanted is None:
            return gpus_visible, f"one process per visible GPU ({gpus_visible})"
        if wanted > gpus_visible:
            return gpus_visible, f"{wanted} GPUs asked for, {gpus_visible} visible: one process per visible GPU"
        return wanted, f"one process per GPU ({wanted})"
    try:
        count = int(requested)
    except ValueError:
        raise LaunchError(f"--processes {requested!r}: expected auto or a whole number >= 1") from None
    if count < 1:
        raise LaunchError(f"--processes {requested!r}: expected auto or a whole number >= 1")
    if gpus_visible and count > gpus_visible:
        raise LaunchError(
            f"--processes {count}: only {gpus_visible} GPUs are visible on this node; "
            f"use auto or at most {gpus_visible}"
        )
    where = "GPU" if gpus_visible else "CPU (gloo)"
    return count, f"{count} process{'es' if count > 1 else ''} on {where}, as asked"


def node_settings(environ: Mapping[str, str]) -> tuple[int, int, str | None, str | None]:
    """(nodes, this node's rank, master address, master port). Inside an srun step every task has its own
    SLURM_NODEID, which wins over the JOBSUB_NODE_RANK it inherited from the runtime on the first node."""
    try:
        nodes = int(environ.get("JOBSUB_NNODES", "1") or "1")
        rank_text = environ.get("SLURM_NODEID") if nodes > 1 and "SLURM_NODEID" in environ else None
        node_rank = int(rank_text or environ.get("JOBSUB_NODE_RANK", "0") or "0")
    except ValueError:
        raise LaunchError("JOBSUB_NNODES / JOBSUB_NODE_RANK / SLURM_NODEID must be whole numbers") from None
    if nodes < 1 or not 0 <= node_rank < nodes:
        raise LaunchError(f"node rank {node_rank} is outside 0..{nodes - 1} (JOBSUB_NNODES={nodes})")
    addr, port = environ.get("MASTER_ADDR"), environ.get("MASTER_PORT")
    if nodes > 1 and not (addr and port):
        raise LaunchError(
            f"{nodes} nodes need MASTER_ADDR and MASTER_PORT (the first node's address and a free port there)"
        )
    return nodes, node_rank, addr, port


def torchrun_command(
    processes: int, nodes: int, node_rank: int, addr: str | None, port: str | None, log_dir: str, argv: list[str]
) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(processes)]
    if nodes == 1:
        command += ["--standalone"]
    else:
        command += ["--nnodes", str(nodes), "--node-rank", str(node_rank), "--master-addr", str(addr)]
        command += ["--master-port", str(port)]
    command += ["--max-restarts", "0", "--tee", "3", "--log-dir", log_dir, "-m", "train_entry", *argv]
    return command


def _gpus_visible() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _die_with_parent() -> None:
    """preexec_fn for torchrun: SIGTERM it (it then stops its workers) if this launcher is SIGKILLed."""
    import ctypes

    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m train_entry.launch",
        description="Run a train_entry command with one process per GPU (torchrun), or one process on the CPU.",
    )
    parser.add_argument(
        "--processes",
        default="auto",
        help="auto (one per GPU asked for and visible, one on a CPU-only machine) or a number (default: auto)",
    )
    parser.add_argument("command", help="the train_entry command: finetune, evaluate, predict, pretrain (or init, ...)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (see python -m train_entry COMMAND -h)")
    return parser


def main(argv: list[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    forwarded = [options.command, *options.args]
    try:
        nodes, node_rank, addr, port = node_settings(os.environ)
        if options.command not in DATA_PARALLEL_COMMANDS:
            processes, why = 1, f"{options.command} runs as one process"
            nodes = 1
        else:
            processes, why = resolve_processes(options.processes, os.environ, _gpus_visible())
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if processes == 1 and nodes == 1:
        print(f"launch: one process ({why})", flush=True)
        os.execv(sys.executable, [sys.executable, "-m", "train_entry", *forwarded])

    env = dict(os.environ)
    # ${rank} is the global rank: the prefix names the process, whichever node it runs on
    env["TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"] = "[rank${rank}]:"
    if not _gpus_visible() and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, _cpus() // processes))  # CPU processes share the cores
    log_dir = tempfile.mkdtemp(prefix="train_entry-ranks-")
    command = torchrun_command(processes, nodes, node_rank, addr, port, log_dir, forwarded)
    where = f"node {node_rank} of {nodes}, " if nodes > 1 else ""
    print(f"launch: {processes * nodes} processes ({where}{why}): {shlex.join(command[1:])}", flush=True)
    proc = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_die_with_parent)

    def forward(signum, _frame) -> None:  # torchrun has its own session: it hears signals through us, once
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        return proc.wait()
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
