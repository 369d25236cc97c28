"""A throwaway one-node Slurm cluster in a temp folder: munged + slurmctld + slurmd on loopback.

Used by the slurm harness (tests/executors/harness_slurm.py) and by benchmarks/jobs.py. Everything lives
under one folder (config, keys, state, spool, logs, pid files); ports are random and job ids start at a
random number, so two clusters on one machine (two test runs, a test run and a benchmark) do not meet.
Every daemon is started here and stopped here by its pid.

Memory limits: with ``cgroups=True`` the node uses proctrack/cgroup + task/cgroup (cgroup v1 memory
controller, ConstrainRAMSpace), so a job over ``--mem`` is OOM-killed and ends OUT_OF_MEMORY. That needs
a writable cgroup v1 memory hierarchy (root on this kind of machine); ``cgroups=False`` gives a node
without limits (proctrack/linuxproc, task/none).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
INSTALL_HINT = "install Slurm and munge: apt-get install -y slurm-wlm munge (see .ci/install-slurm.sh)"
#: the node's CPUs and memory as Slurm sees them
CPUS = 2
REAL_MEMORY_MB = 4000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing_binaries() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [name for name in BINARIES if shutil.which(name, path=path) is None]


def cgroup_v1_memory_writable() -> bool:
    """True when the cgroup v1 memory and freezer controllers are mounted and writable (what task/cgroup needs)."""
    memory, freezer = Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup/freezer")
    return (
        (memory / "memory.limit_in_bytes").exists()
        and freezer.is_dir()
        and os.access(memory, os.W_OK)
        and os.access(freezer, os.W_OK)
    )


class ClusterError(RuntimeError):
    pass


@dataclass
class SlurmCluster:
    root: Path
    cgroups: bool = True
    partition: str = "debug"
    cpus: int = CPUS
    #: slurmd daemons on this machine, each its own Slurm node (own port, spool and log: `-N NAME`)
    nodes: int = 1
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    #: why a node with cgroups did not start, when the harness fell back to one without
    cgroup_error: str = ""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.name = f"jsn{secrets.token_hex(3)}"  # the node's (and the controller's) Slurm name
        self.host = socket.gethostname().split(".")[0]
        self.ctld_port = _free_port()
        self.node_names = [self.name if i == 0 else f"{self.name}n{i}" for i in range(self.nodes)]
        self.slurmd_ports = [_free_port() for _ in self.node_names]
        self.first_job_id = 100_000 + secrets.randbelow(3_000_000)

    # -- the environment a client needs --------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """What sbatch/squeue/scontrol/scancel need to reach this cluster (and nothing else)."""
        return {"SLURM_CONF": str(self.conf)}

    def client_env(self) -> dict[str, str]:
        return {**os.environ, **self.env, "PATH": os.environ.get("PATH", "") + ":/usr/sbin:/sbin"}

    # -- configuration ---------------------------------------------------------------------------------
    def write_config(self) -> None:
        s = self.root
        for sub in ("state", "spool", "log"):
            (s / sub).mkdir(parents=True, exist_ok=True)
        key = s / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        if self.cgroups:
            plugins = "ProctrackType=proctrack/cgroup\nTaskPlugin=task/cgroup,task/affinity\n"
            (s / "cgroup.conf").write_text(
                "CgroupPlugin=cgroup/v1\nCgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=yes\n"
                "ConstrainSwapSpace=yes\nAllowedSwapSpace=0\n"
            )
        else:
            plugins = "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
        self.conf.write_text(
            f"ClusterName=jobsub{self.name}\n"
            f"SlurmctldHost={self.host}(127.0.0.1)\n"
            f"SlurmctldPort={self.ctld_port}\n"
            f"SlurmdPort={self.slurmd_ports[0]}\n"
            "SlurmUser=root\nSlurmdUser=root\n"
            "AuthType=auth/munge\nCredType=cred/munge\n"
            f"AuthInfo=socket={s / 'munge.sock'}\n"
            f"StateSaveLocation={s / 'state'}\n"
            f"SlurmdSpoolDir={s / 'spool'}/%n\n"
            f"SlurmctldPidFile={s / 'slurmctld.pid'}\n"
            f"SlurmdPidFile={s / 'slurmd-%n.pid'}\n"
            f"SlurmctldLogFile={s / 'log' / 'slurmctld.log'}\n"
            f"SlurmdLogFile={s / 'log' / 'slurmd-%n.log'}\n"
            "SlurmctldDebug=info\nSlurmdDebug=info\n"
            f"JobCompType=jobcomp/filetxt\nJobCompLoc={s / 'log' / 'jobcomp.log'}\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            f"{plugins}"
            "MpiDefault=none\nSwitchType=switch/none\nReturnToService=2\n"
            f"FirstJobId={self.first_job_id}\n"
            "MinJobAge=300\nKillWait=5\nInactiveLimit=0\nWaitTime=0\n"
            "SchedulerType=sched/backfill\nSchedulerParameters=sched_interval=1\n"
            "SlurmctldTimeout=30\nSlurmdTimeout=30\nMessageTimeout=10\n"
            + "".join(
                f"NodeName={name} NodeHostname={self.host} NodeAddr=127.0.0.1 Port={port} CPUs={self.cpus} "
                f"RealMemory={REAL_MEMORY_MB} State=UNKNOWN\n"
                for name, port in zip(self.node_names, self.slurmd_ports, strict=True)
            )
            + f"PartitionName={self.partition} Nodes={','.join(self.node_names)} Default=YES MaxTime=INFINITE State=UP "
            "DefMemPerCPU=500\n"
        )

    # -- lifecycle -------------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / "log" / f"{name}.stdout").open("ab")
        self.procs[name] = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.client_env(),
            start_new_session=True,
        )
        log.close()

    def start(self, deadline_s: float = 60.0) -> None:
        """Write the config, start the three daemons and wait until the node is idle (or raise ClusterError)."""
        self.write_config()
        s = self.root
        self._spawn(
            "munged",
            [
                "munged",
                "-F",
                "--force",
                f"--socket={s / 'munge.sock'}",
                f"--key-file={s / 'munge.key'}",
                f"--pid-file={s / 'munged.pid'}",
                f"--seed-file={s / 'munged.seed'}",
                f"--log-file={s / 'log' / 'munged.log'}",
                "--num-threads=2",
            ],
        )
        self._wait(lambda: (s / "munge.sock").exists(), deadline_s, "munged socket")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        for name in self.node_names:
            self._spawn(self._slurmd(name), ["slurmd", "-D", "-N", name, "-f", str(self.conf)])
        self._wait(self._node_idle, deadline_s, f"nodes {','.join(self.node_names)} idle")

    def _slurmd(self, node: str) -> str:
        return "slurmd" if node == self.name else f"slurmd-{node}"

    def _node_idle(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode}: {self.log_tail(name)}")
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], env=self.client_env(), capture_output=True, text=True, timeout=10
        )
        return out.returncode == 0 and out.stdout.split() == ["idle"] * len(self.node_names)

    def _wait(self, predicate, deadline_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.1)
        raise ClusterError(f"{what} not reached after {deadline_s:g}s; slurmctld: {self.log_tail('slurmctld')}")

    def log_tail(self, name: str, lines: int = 5) -> str:
        log = "slurmd-" + self.name if name == "slurmd" else name
        for path in (self.root / "log" / f"{log}.log", self.root / "log" / f"{name}.stdout"):
            if path.exists() and path.stat().st_size:
                return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A Slurm client command against this cluster."""
        return subprocess.run(list(argv), env=self.client_env(), capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        """Cancel what is left, then stop slurmd, slurmctld and munged by their pids (never by name)."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", "--signal=KILL", f"--partition={self.partition}", timeout=10)
                self.run("scancel", f"--partition={self.partition}", timeout=10)
            except (OSError, subprocess.SubprocessError):
                pass
        for name in [*(self._slurmd(node) for node in self.node_names), "slurmctld", "munged"]:
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
