"""Docker on the local store: the runner stays on this machine, only the job's command runs in the container.

Why (issue 17, item 2): the local store is one folder tree — object bytes, their metadata, staging, locks —
so a container that runs the runtime needs the whole store mounted read-write, and with it every other
object of every bucket. Here the runtime (``python -m jobsub.runtime``) runs on the host as a detached
process, like the local executor's: it reads the record, stages the inputs and uploads the outputs itself,
through the store, as plain files. Only the command goes into the container, through the runner's
``JOBSUB_COMMAND_PREFIX`` (the hook Slurm uses for ``srun``): the runner runs ``python -m
jobsub.executors.docker_local CONFIG bash -c COMMAND``, and this module's ``main`` (the "shim", a child of
the runner on the host) creates and starts the container and relays its output.

What the container gets:

- mounts: the job's code and inputs read-only, its outputs folder and its metrics file read-write, all at
  the paths the runner rendered into the command; nothing else of the host, nothing of the store;
- its user: the submitter's uid:gid, or — when the submitter is root — an unprivileged uid of this job
  alone (``docker.job_uid``), to which the code, inputs and outputs folders are handed first (``lchown``);
- ``no-new-privileges``, no capabilities, a pids limit, the job's resources; removed by the shim once it
  has read whether it was an OOM kill (unless ``docker.keep``);
- its environment: the command's, without the host's PATH/HOME/TMPDIR and the runner's own variables;
  the secret ones (storage credentials, ``--secret-env``) go over the container's stdin, never its config.

Nothing outlives the shim: the container's PID 1 is a small bootstrap (``BOOTSTRAP``) that reads the secrets
line, runs the command in a session of its own, forwards SIGTERM and exits — which ends every process in
the container's PID namespace — when the command exits or when its stdin closes. The container is created
with StdinOnce, so the engine closes that stdin as soon as the shim's attach connection goes: a cancel
escalated to SIGKILL, the runner killed (the shim dies with it, PR_SET_PDEATHSIG), a crash. The shim removes
the container after it exited; one whose shim was killed is stopped and ``cleanup`` removes it (by its job-id
label) once the record is final.

What the job writes reaches the store only as the runner copies it: symlinks that leave the outputs folder
are not followed (transfer/sources.py), and a setuid bit is never carried (the store writes new 0600 files).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import sys
import threading
from pathlib import Path
from typing import Any

from jobsub.config import state_dir
from jobsub.executors import secret_handoff
from jobsub.executors.base import LaunchRequest
from jobsub.executors.docker_handle import HOST_RUNNER, DockerHandle

CONFIG_NAME = "docker-command.json"
#: the runner's variables that describe the host, not the job: never copied into the container
HOST_ONLY = frozenset(
    {"PATH", "HOME", "TMPDIR", "PWD", "OLDPWD", "SHLVL", "_", "JOBSUB_COMMAND_PREFIX", "JOBSUB_OOM_REPORT"}
)
#: what the host runner inherits from the submitting shell (everything else it gets is the request's)
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")

#: PID 1 of the container: secrets from stdin, the command in its own session, SIGTERM forwarded, exit (and
#: with it the end of every process of the container) when the command exits or stdin closes
BOOTSTRAP = r"""
import json, os, signal, sys, threading
buf = b""
while not buf.endswith(b"\n"):
    chunk = os.read(0, 65536)
    if not chunk or len(buf) > (1 << 20):
        sys.stderr.write("error: the jobsub shim went away before the job started\n")
        os._exit(125)
    buf += chunk
os.environ.update(json.loads(buf)["env"])
pid = os.fork()
if pid == 0:
    os.setsid()
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.execvp(sys.argv[1], sys.argv[1:])
def forward(sig, frame):
    try:
        os.killpg(pid, sig)
    except OSError:
        pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
def watch():
    while True:
        try:
            if not os.read(0, 4096):
                break
        except OSError:
            break
    os._exit(137)
threading.Thread(target=watch, daemon=True).start()
while True:
    done, status = os.wait()
    if done == pid:
        code = os.waitstatus_to_exitcode(status)
        os._exit(code if code >= 0 else 128 - code)
"""


def submit(request: LaunchRequest, config: dict[str, Any]) -> DockerHandle:
    """Start the host runner of a docker job on the local store (see the module doc) with the shim's
    `config` (engine, image, user, container options; made by DockerExecutor.local_store_config). The handle
    names both the engine (for cleanup) and the runner process (poll, cancel: as the local executor's)."""
    from jobsub.executors.local import _proc_start_time, spawn_runner

    run_dir = state_dir() / "runs" / request.job_id
    run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = {**config, "job_id": request.job_id, "work": str((run_dir / "work").resolve())}
    config["secret_names"] = sorted(request.secret_env)
    config_path = run_dir / CONFIG_NAME
    fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(config, out)
    root = str(request.profile.local_root().resolve())
    env = {name: os.environ[name] for name in INHERITED if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(request.runtime_env())
    env["JOBSUB_PROFILE_JSON"] = request.profile.model_copy(update={"root": root}).model_dump_json()
    env["JOBSUB_JOB_ID"] = request.job_id
    env["JOBSUB_OOM_REPORT"] = str(run_dir / "oom-report")  # runtime/oom.py: the shim names an OOM kill there
    # no periodic output upload while the container runs: the runner reads outputs/ on the host, as the
    # submitter, and the job could swap a folder there for a link to the submitter's files between the
    # check and the read; once the container is gone, nothing in it can move (the final upload is safe)
    env["JOBSUB_OUTPUT_SYNC_SECONDS"] = "inf"
    env["JOBSUB_COMMAND_PREFIX"] = shlex.join([sys.executable, "-m", "jobsub.executors.docker_local", str(config_path)])
    proc = spawn_runner(request, run_dir, Path(config["work"]), env)
    options = config["options"]
    return DockerHandle(
        kind="docker",
        mode=HOST_RUNNER,
        host=config["host"],
        runner_host=socket.gethostname(),
        pid=proc.pid,
        start_time=_proc_start_time(proc.pid),
        run_dir=str(run_dir),
        image=config["image"],
        keep=bool(config["keep"]),
        user=options["user"],
        network=options.get("network_mode") or options.get("network") or "",
    )


# -- the shim: runs on the host as the runner's child, once per attempt ---------------------------------


def _hand_over(path: Path, uid: int, gid: int) -> None:
    """Give the job's uid a folder the runner made (never following a link), so the container can use it."""
    os.chown(path, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _prepare(config: dict[str, Any]) -> tuple[dict[str, dict[str, str]], str]:
    """The bind mounts (code and inputs read-only; outputs and the metrics file read-write) and the working
    folder; the folders handed to the job's uid first when the submitter is root."""
    work = Path(config["work"])
    uid, gid = int(config["uid"]), int(config["gid"])
    outputs = work / "outputs"
    outputs.mkdir(parents=True, exist_ok=True)
    metrics = work / "metrics.jsonl"
    if not metrics.exists():
        fd = os.open(metrics, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        os.close(fd)
    volumes: dict[str, dict[str, str]] = {}
    for name, mode in (("code", "ro"), ("inputs", "ro"), ("outputs", "rw")):
        folder = work / name
        if folder.is_dir() and not folder.is_symlink():
            if config["hand_over"]:
                _hand_over(folder, uid, gid)
            volumes[str(folder)] = {"bind": str(folder), "mode": mode}
    if config["hand_over"]:
        os.chown(metrics, uid, gid, follow_symlinks=False)
    volumes[str(metrics)] = {"bind": str(metrics), "mode": "rw"}
    cwd = os.getcwd()
    inside = any(cwd == path or cwd.startswith(path + "/") for path in volumes)
    return volumes, cwd if inside else "/tmp"


def _drop_setid_bits(folder: Path) -> None:
    """Once the container is gone: no setuid/setgid file of the job's uid stays in its outputs on the host
    (the store never copies the bits; this is for the folder itself, kept until the run folder goes)."""
    for dirpath, _dirnames, filenames in os.walk(folder, followlinks=False):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                mode = os.lstat(path).st_mode
                if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                    os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID))
            except OSError:
                pass


def _container_env(config: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(the container's environment, the secrets for its stdin) from the command's environment."""
    secret_names = set(config["secret_names"])
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for name, value in os.environ.items():
        if name in HOST_ONLY or name == "JOBSUB_PROFILE_JSON":
            continue
        (secrets if name in secret_names else env)[name] = value
    env["HOME"] = "/tmp"  # the job's uid has no home in the image
    return env, secrets


def run(config: dict[str, Any], argv: list[str]) -> int:
    """Create the container, attach, start, hand the secrets over, relay its output; its exit code."""
    from docker.utils.socket import frames_iter

    import docker

    stops = _forward_stops(float(config["stop_after"]))  # from now on: a stop before the start is kept
    client: Any = None
    container = None
    try:  # an engine that went away since submit, a folder that cannot be handed over: one line, exit 125
        volumes, cwd = _prepare(config)
        env, secrets = _container_env(config)
        options = dict(config["options"])
        labels, user = options.pop("labels"), options.pop("user")
        if "network" in options:
            options["network_mode"] = options.pop("network")
        if config["gpus"]:
            requests = [docker.types.DeviceRequest(count=int(config["gpus"]), capabilities=[["gpu"]])]
            options["device_requests"] = requests
        attempt = os.environ.get("JOBSUB_ATTEMPT", "1")
        client = docker.DockerClient(base_url=config["host"], timeout=60)
        waiter = docker.APIClient(base_url=config["host"], timeout=None)
        api = client.api
        created = api.create_container(
            config["image"],
            command=argv,
            entrypoint=["python", "-c", BOOTSTRAP],
            name=f"jobsub-{config['job_id']}-{attempt}",
            user=user,
            labels=labels,
            stdin_open=True,
            detach=False,  # with stdin_open: StdinOnce, the engine closes stdin when this shim's attach goes
            environment=env,
            working_dir=cwd,
            host_config=api.create_host_config(binds=volumes, **options),
        )
        container = client.containers.get(created["Id"])
        stream = container.attach_socket(params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        # the wait is registered (the engine answers its headers) before the start: no exit is missed
        response = waiter._post(waiter._url("/containers/{0}/wait", container.id), params={"condition": "next-exit"},
                                stream=True)  # fmt: skip
        if stops.requested is not None:  # stopped before it started: nothing to run
            client.api.remove_container(container.id, force=True)
            return 128 + stops.requested
        stops.attach(client, container.id)
        container.start()
        if stops.requested is not None:  # a stop between attach and start met a container not yet running
            stops.forward(stops.requested)
        getattr(stream, "_sock", stream).sendall(secret_handoff.encode(secrets))
        for kind, data in frames_iter(stream, tty=False):
            out = sys.stderr.buffer if kind == 2 else sys.stdout.buffer
            out.write(data)
            out.flush()
        result = json.loads(response.raw.read() or b"{}")
        _drop_setid_bits(Path(config["work"]) / "outputs")
        getattr(stream, "_sock", stream).close()
        code = result.get("StatusCode")
        _after_exit(api, container.id, config, options)
        return int(code) if isinstance(code, int) else 1
    except Exception as exc:  # whatever it is: one line in the job's log, no container left
        why = " ".join(str(getattr(exc, "explanation", None) or exc).split())[:300]
        print(f"error: docker run {config['image']} failed: {why}", file=sys.stderr, flush=True)
        if container is not None and client is not None:
            try:
                client.api.remove_container(container.id, force=True)
            except Exception:
                pass
        return 125


def _after_exit(api: Any, container_id: str, config: dict[str, Any], options: dict[str, Any]) -> None:
    """An OOM kill named for the runner (runtime/oom.py reads the report), then the container removed unless
    keep: the shim removes it itself (no AutoRemove, which would race the inspect)."""
    try:
        state = api.inspect_container(container_id).get("State") or {}
        report = os.environ.get("JOBSUB_OOM_REPORT")
        if state.get("OOMKilled") and report:
            Path(report).write_text(str(options.get("mem_limit") or ""))
        if not config["keep"]:
            api.remove_container(container_id, force=True)
    except Exception as exc:  # gone already, or the engine went away: cleanup tries again once final
        print(f"jobsub: could not inspect or remove container {container_id[:12]}: {exc}", file=sys.stderr)


class _Stops:
    """SIGTERM/SIGINT to the shim (the runner stopping the job) reach the command; SIGKILL follows shortly
    before the runner's own escalation would kill this shim, so the container ends here, not left over."""

    def __init__(self, stop_after: float) -> None:
        self.stop_after = stop_after
        self.requested: int | None = None
        self.client: Any = None
        self.container_id = ""

    def attach(self, client: Any, container_id: str) -> None:
        self.client, self.container_id = client, container_id
        if self.requested is not None:  # came between the check and now
            self.forward(self.requested)

    def handle(self, signum: int, _frame: Any) -> None:
        self.requested = signum
        if self.container_id:
            self.forward(signum)

    def forward(self, signum: int) -> None:
        def act() -> None:
            try:
                self.client.api.kill(self.container_id, signal.Signals(signum).name)
                threading.Event().wait(self.stop_after)
                self.client.api.kill(self.container_id, "SIGKILL")
            except Exception:
                pass  # gone already: the kill of a container that exited fails, and that is all

        threading.Thread(target=act, daemon=True).start()


def _forward_stops(stop_after: float) -> _Stops:
    stops = _Stops(stop_after)
    signal.signal(signal.SIGTERM, stops.handle)
    signal.signal(signal.SIGINT, stops.handle)
    return stops


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        print("usage: python -m jobsub.executors.docker_local CONFIG COMMAND...", file=sys.stderr)
        return 2
    try:
        config = json.loads(Path(args[0]).read_text())
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the docker command config {args[0]}: {exc}", file=sys.stderr)
        return 125
    return run(config, args[1:])


if __name__ == "__main__":
    sys.exit(main())
