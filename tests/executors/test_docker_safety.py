"""Issue 17 on the Docker executor: nothing leaks, nothing is left behind, no record in the bucket steers it.

Each hostile case sits beside the happy one, all against the real dockerd of tests/executors/harness_docker.py
(run them under the heavy lock: `flock /tmp/jobsub-heavy.lock pytest tests/executors/test_docker_safety.py`),
except the refused engine addresses, which need no engine. No mocks.
"""

from __future__ import annotations

import io
import json
import socket
import tarfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import SECRET, Env, code_folder, poll
from tests.executors.harness import ExecutorHarness
from tests.executors.test_docker import _env, _errors, _handle, _nothing_recorded

pytest.importorskip("docker", reason="the docker SDK is not installed (pip install 'jobsub[docker]')")

#: a --secret-env value, looked for everywhere the engine and the bucket could show it
TOKEN = "hf_Zq8dockerSafetyTokenValue123"


def _job_containers(client, job_id: str) -> list:
    return client.api.containers(all=True, filters={"label": f"jobsub.job-id={job_id}"})


def _record_texts(env: Env, job_id: str) -> list[tuple[str, bytes]]:
    boto = env.boto()
    found = []
    for obj in boto.list_objects_v2(Bucket=env.bucket, Prefix=f"jobs/{job_id}/").get("Contents", []):
        found.append((obj["Key"], boto.get_object(Bucket=env.bucket, Key=obj["Key"])["Body"].read()))
    return found


def _final_in_record(env: Env, job_id: str) -> dict:
    """The record's status.json read straight from the store: no `jobsub status`, so no cleanup by it."""
    from jobsub.config import resolve_profile
    from jobsub.uri import ObjectURI

    store = env.store()
    jobs = ObjectURI.parse(resolve_profile()[1].jobs_uri).as_prefix()
    return dict(json.loads(store.get(jobs.bucket, f"{jobs.key}{job_id}/status.json")))


def test_no_secret_in_inspect_logs_or_record_and_the_job_still_gets_them(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    _, client = docker_engine
    env = _env(request, tmp_path, monkeypatch, docker_harness, "s3")
    code = code_folder(
        tmp_path,
        "import os, time\n"
        "print('key', len(os.environ.get('AWS_SECRET_ACCESS_KEY', '')), 'token', len(os.environ['HF_TOKEN']))\n"
        "print('echo', os.environ['HF_TOKEN'], flush=True)\n"
        "time.sleep(600)\n",
    )
    result = env.run(
        "submit", "python-script", "--code", str(code), "--secret-env", "HF_TOKEN", "--json",
        extra_env={"HF_TOKEN": TOKEN},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    job_id = json.loads(result.stdout)["job_id"]
    try:
        poll(lambda: "token" in env.run("logs", job_id).stdout, 120, 0.3, "the job to start")
        logs = env.run("logs", job_id).stdout
        assert f"key {len(SECRET)} token {len(TOKEN)}" in logs  # the runtime and the command got both
        assert TOKEN not in logs  # the job printed it: the log shows it redacted
        handle = _handle(env, job_id)
        inspected = json.dumps(client.api.inspect_container(handle["container_id"]))
        for value in (SECRET, TOKEN):
            assert value not in inspected  # not in Env, Cmd, Labels, Mounts: nowhere in the config
            assert value.encode() not in client.api.logs(handle["container_id"])
        assert '"OpenStdin": true' in inspected.replace(" ", "").replace('":true', '": true')
    finally:
        env.run("cancel", job_id, timeout=120)
    for key, body in _record_texts(env, job_id):
        assert SECRET.encode() not in body and TOKEN.encode() not in body, key


def test_containers_are_removed_on_job_end_without_anyone_asking(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    _, client = docker_engine
    env = _env(request, tmp_path, monkeypatch, docker_harness, "s3")
    ok = env.run_json("submit", "python-script", "--code", str(code_folder(tmp_path, "print('ok')\n", "a")))
    bad = env.run_json("submit", "python-script", "--code", str(code_folder(tmp_path, "raise SystemExit(3)\n", "b")))
    for job_id, state in ((ok["job_id"], "SUCCEEDED"), (bad["job_id"], "FAILED")):
        poll(lambda j=job_id: _final_in_record(env, j)["state"] in ("SUCCEEDED", "FAILED"), 180, 0.5, "a final state")
        assert _final_in_record(env, job_id)["state"] == state
        # nobody ran `jobsub status`: the engine removes the container once the runner exits
        poll(lambda j=job_id: not _job_containers(client, j), 30, 0.2, f"container of {job_id} removed")
    assert env.run_json("status", bad["job_id"])["status"]["exit_code"] == 3  # the exit code is in the record


def _image_without_python(client) -> str:
    """A one-file image: the runtime's `python` is not in it, so the engine refuses the start."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    client.api.import_image_from_data(data.getvalue(), repository="jobsub-nopython", tag="test")
    return "jobsub-nopython:test"


def test_a_failed_start_leaves_no_container_and_a_failed_record(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    _, client = docker_engine
    image = _image_without_python(client)
    for store in ("s3", "local"):
        env = _env(request, tmp_path / store, monkeypatch, docker_harness, store)
        before = {c["Id"] for c in client.api.containers(all=True)}
        code = code_folder(tmp_path, "print(1)\n", f"code-{store}")
        if store == "local":  # the container starts on the host runner's side, after staging: the job fails
            result = env.run("submit", "python-script", "--code", str(code), "--set", f"image={image}", "--follow",
                             timeout=300)  # fmt: skip
            assert result.returncode == 125, result.stdout + result.stderr  # --follow: the job's exit code
            assert f"docker run {image} failed" in result.stdout and "Traceback" not in result.stdout
        else:
            result = env.run("submit", "python-script", "--code", str(code), "--set", f"image={image}")
            assert result.returncode == 2 and len(_errors(result.stderr)) == 1, result.stderr
            assert f"docker run {image} failed" in result.stderr
        assert SECRET not in result.stdout + result.stderr
        assert {c["Id"] for c in client.api.containers(all=True)} == before  # nothing left on the engine
        jobs = env.run_json("jobs")
        assert len(jobs) == 1 and jobs[0]["state"] == "FAILED"


def test_resources_the_engine_refuses_are_refused_before_anything_is_uploaded(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    env = _env(request, tmp_path, monkeypatch, docker_harness, "local")
    code = code_folder(tmp_path, "print('never')\n")
    result = env.run("submit", "python-script", "--code", str(code), "--set", "resources.memory=2MiB")
    assert result.returncode == 2 and len(_errors(result.stderr)) == 1, result.stderr
    assert "resources.memory=2 MiB is below the Docker engine's minimum of 6 MiB" in result.stderr
    result = env.run("submit", "python-script", "--code", str(code), "--set", "resources.cpus=4096")
    assert result.returncode == 2 and len(_errors(result.stderr)) == 1, result.stderr
    assert "resources.cpus=4096 but the Docker engine at" in result.stderr and "ask for at most" in result.stderr
    _nothing_recorded(env)


@pytest.mark.parametrize("where", ["profile", "DOCKER_HOST"])
def test_docker_host_with_a_password_is_refused_and_not_echoed(
    request, tmp_path: Path, monkeypatch, where: str
) -> None:
    harness = ExecutorHarness(kind="docker", profile_settings={"executor": "docker", "docker": {}})
    env = _env(request, tmp_path, monkeypatch, harness, "local")
    host = "tcp://admin:hunter2secret@127.0.0.1:2375"
    if where == "profile":
        result = env.run("profile", "add", "x", "--storage", "local", "--executor", "docker", "--docker-host", host)
    else:
        code = code_folder(tmp_path, "print('never')\n")
        result = env.run("submit", "python-script", "--code", str(code), extra_env={"DOCKER_HOST": host})
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(_errors(result.stderr)) == 1 and "must not contain user:password@" in result.stderr
    assert "hunter2secret" not in result.stdout + result.stderr
    # a user name alone (ssh://me@host, the key does the rest) stays fine
    ok = env.run("profile", "add", "y", "--storage", "local", "--executor", "docker", "--docker-host", "ssh://me@gpu")
    assert ok.returncode == 0, ok.stderr


def test_the_container_is_unprivileged(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    env = _env(request, tmp_path, monkeypatch, docker_harness, "s3")
    code = code_folder(
        tmp_path,
        "import os\n"
        "status = open('/proc/self/status').read()\n"
        "nnp = [l.split()[1] for l in status.splitlines() if l.startswith('NoNewPrivs')][0]\n"
        "capeff = [l.split()[1] for l in status.splitlines() if l.startswith('CapEff')][0]\n"
        "where = [p for p in ('/sys/fs/cgroup/pids.max', '/sys/fs/cgroup/pids/pids.max') if os.path.exists(p)]\n"
        "pids = open(where[0]).read().strip()\n"
        "print('uid', os.getuid(), 'nnp', nnp, 'capeff', capeff, 'pids', pids, flush=True)\n",
    )
    result = env.run("submit", "python-script", "--code", str(code), "--follow", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("uid") or " uid " in x)
    words = line.split()
    values = dict(zip(words[words.index("uid") :: 2], words[words.index("uid") + 1 :: 2], strict=False))
    assert values["uid"] != "0" and values["nnp"] == "1" and int(values["capeff"], 16) == 0
    assert values["pids"] == "8192"
    shown = env.run("status", result.stdout.splitlines()[0]).stdout
    assert "host network" in shown  # moto is on loopback: the job shares the engine's network, and says so
    # an image whose user is root runs as an unprivileged uid of this job alone
    _, client = docker_engine
    root_image = "jobsub-rootuser:test"
    base = docker_harness.profile_settings["docker"]["image"]
    client.images.build(fileobj=io.BytesIO(f"FROM {base}\nUSER root\n".encode()), tag=root_image, rm=True)
    result = env.run("submit", "python-script", "--code", str(code), "--set", f"image={root_image}", "--follow",
                     timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if " uid " in f" {x}")
    assert int(line.split()[line.split().index("uid") + 1]) >= 2_000_000, line


class _Capture:
    """A listening socket that records whether anyone connected (a rewritten record's 'docker host')."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]

    def connected(self) -> bool:
        try:
            conn, _ = self.sock.accept()
        except TimeoutError:
            return False
        conn.close()
        return True


def test_a_rewritten_executor_record_moves_nothing(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    _, client = docker_engine
    env = _env(request, tmp_path, monkeypatch, docker_harness, "s3")
    image = docker_harness.profile_settings["docker"]["image"]
    victim = client.containers.run(image, entrypoint=["python", "-c", "import time; time.sleep(300)"], detach=True)
    capture = _Capture()
    code = code_folder(tmp_path, "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    job_id = env.run_json("submit", "python-script", "--code", str(code))["job_id"]
    boto = env.boto()
    key = f"jobs/{job_id}/executor.json"
    real = json.loads(boto.get_object(Bucket=env.bucket, Key=key)["Body"].read())
    try:
        poll(lambda: "up" in env.run("logs", job_id).stdout, 120, 0.3, "the job to start")
        # another engine: status neither connects there nor gives the job up
        boto.put_object(
            Bucket=env.bucket, Key=key, Body=json.dumps({**real, "host": f"tcp://127.0.0.1:{capture.port}"}).encode()
        )
        assert env.run_json("status", job_id)["status"]["state"] == "RUNNING"
        assert not capture.connected()
        # an unrelated container: cancel says so and stops nothing but the job (through its cancel marker)
        boto.put_object(Bucket=env.bucket, Key=key, Body=json.dumps({**real, "container_id": victim.id}).encode())
        cancel = env.run("cancel", job_id)
        assert cancel.returncode == 2 and len(_errors(cancel.stderr)) == 1, cancel.stderr
        assert "is not this job's" in cancel.stderr
        final = poll(lambda: (s := env.run_json("status", job_id))["status"]["state"] == "CANCELLED" and s, 120, 0.5)
        assert final["status"]["state"] == "CANCELLED"  # status of a final job ran cleanup on the rewritten handle
        victim.reload()
        assert victim.status == "running"  # neither stopped nor removed
        assert not capture.connected()
    finally:
        victim.remove(force=True)
        boto.put_object(Bucket=env.bucket, Key=key, Body=json.dumps(real).encode())
        env.run("cancel", job_id, timeout=120)
        capture.sock.close()
    deadline = time.monotonic() + 60
    while _job_containers(client, job_id) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not _job_containers(client, job_id)


def _handoff(data: bytes, monkeypatch, timeout: float = 5.0) -> tuple[dict[str, str], list[str]]:
    import os

    from jobsub.executors import secret_handoff

    monkeypatch.setattr(secret_handoff, "TIMEOUT_SECONDS", timeout)
    read, write = os.pipe()

    def feed() -> None:  # more than a pipe holds blocks: write beside the reader, as the engine does
        try:
            os.write(write, data)
        except OSError:
            pass  # the reader gave up first (too large)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    environ = {secret_handoff.FLAG: "stdin"}
    try:
        names = secret_handoff.receive_secrets(environ, fd=read)
    finally:
        os.close(read)
        feeder.join(5)
        os.close(write)
    return environ, names


def test_the_runtime_reads_the_handoff_line_and_refuses_bad_ones(monkeypatch) -> None:
    """The runtime side on a pipe (what the container's stdin is): values arrive, the flag is gone, and a
    missing, late, huge or malformed handoff is one line naming the problem, never a value."""
    from jobsub.executors.secret_handoff import MAX_BYTES, HandoffError, encode
    from jobsub.redact import redact

    environ, names = _handoff(encode({"HF_TOKEN": TOKEN, "AWS_SECRET_ACCESS_KEY": SECRET}), monkeypatch)
    assert environ == {"HF_TOKEN": TOKEN, "AWS_SECRET_ACCESS_KEY": SECRET} and names == sorted(environ)
    assert TOKEN not in redact(f"echo {TOKEN}")
    for data, said in (
        (b"", "no secrets arrived"),  # nothing written: the deadline, not a hang
        (b"not json\n", "not JSON"),
        (b'{"env": {"BAD NAME": "x"}}\n', "not a valid environment name"),
        (b'{"env": {"A": 1}}\n', "secret variable A is not a string"),
        (b"x" * (MAX_BYTES + 10), f"exceed {MAX_BYTES} bytes"),
    ):
        with pytest.raises(HandoffError, match=said) as caught:
            _handoff(data, monkeypatch, timeout=0.5)
        assert TOKEN not in str(caught.value)
    with pytest.raises(Exception, match="at most"):
        encode({"BIG": "x" * MAX_BYTES})


def test_a_job_on_the_local_store_stages_runs_and_uploads_as_an_unprivileged_uid(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    """The happy side of the local-store design (executors/docker_local.py): the runner on the host stages the
    input, the command in the container reads it (read-only), writes its outputs as the job's own uid, and
    the outputs land in the store as the submitter's plain files; the container is gone afterwards."""
    import os
    import stat

    _, client = docker_engine
    env = _env(request, tmp_path, monkeypatch, docker_harness, "local")
    data = tmp_path / "data"
    data.mkdir()
    (data / "words.txt").write_text("alpha beta\n")
    code = code_folder(
        tmp_path,
        "import os, pathlib\n"
        "src = pathlib.Path(os.environ['JOBSUB_INPUT_DATA'])\n"
        "words = (src / 'words.txt').read_text().split()\n"
        "out = pathlib.Path(os.environ['JOBSUB_OUTPUT_DIR'])\n"
        "(out / 'count.txt').write_text(str(len(words)))\n"
        "try:\n"
        "    (src / 'words.txt').write_text('changed')\n"
        "    print('input written', flush=True)\n"
        "except OSError as exc:\n"
        "    print('input refused', exc.errno, flush=True)\n"
        "print('uid', os.getuid(), 'home', os.environ['HOME'], flush=True)\n"
        # the container's config Env is PID 1's first environment: the secret came later, over stdin
        "config = open('/proc/1/environ', 'rb').read().decode()\n"
        "print('token', len(os.environ['HF_TOKEN']), 'in config', os.environ['HF_TOKEN'] in config, flush=True)\n",
    )
    result = env.run("submit", "python-script", "--code", str(code), "--input", f"data={data}", "--secret-env",
                     "HF_TOKEN", "--follow", timeout=300, extra_env={"HF_TOKEN": TOKEN})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    job_id = result.stdout.splitlines()[0]
    assert f"token {len(TOKEN)} in config False" in result.stdout and TOKEN not in result.stdout
    assert "input refused 30" in result.stdout  # EROFS: the inputs are mounted read-only
    line = next(x for x in result.stdout.splitlines() if " uid " in f" {x}")
    uid = int(line.split()[line.split().index("uid") + 1])
    if os.getuid() == 0:
        assert uid >= 2_000_000, line  # never root: a uid of this job alone
    else:
        assert uid == os.getuid(), line
    # the job's outputs folder on the host is its uid's; what reached the store is the submitter's plain file
    handle = _handle(env, job_id)
    outputs = Path(handle["run_dir"]) / "work" / "outputs"
    assert outputs.stat().st_uid == uid
    store = Path(env.vars["XDG_DATA_HOME"]) / "jobsub" / "store"
    stored = [p for p in store.rglob("count.txt") if ".jobsub" not in p.parts and job_id in str(p)]
    assert len(stored) == 1 and stored[0].read_text() == "2"
    assert stored[0].stat().st_uid == os.getuid() and not stored[0].stat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert "only the job's own folders are mounted" in env.run("status", job_id).stdout
    for path in Path(handle["run_dir"]).glob("*.json"):  # the shim's config holds the names, never a value
        assert TOKEN not in path.read_text()
    poll(lambda: not _job_containers(client, job_id), 30, 0.2, "the job's container removed")


def test_a_job_on_the_local_store_cannot_swap_its_outputs_for_a_link_to_the_submitters_files(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    """Hostile: the runner reads outputs/ on the host as the submitter. The job keeps swapping its outputs
    folder `d` between a real folder and a link to a host folder of the submitter's (bind mounts use host
    paths, so the job knows them), with periodic uploads asked every 0.5 s. No byte of the host file may
    reach the store: outputs are read only once the container is gone."""
    secret_dir = tmp_path / "host-secret"
    secret_dir.mkdir()
    (secret_dir / "note.txt").write_text("HOST SECRET of the submitter\n")
    env = _env(request, tmp_path, monkeypatch, docker_harness, "local")
    code = code_folder(
        tmp_path,
        "import os, time\n"
        "out = os.environ['JOBSUB_OUTPUT_DIR']\n"
        "d, real = os.path.join(out, 'd'), os.path.join(out, 'd.real')\n"
        "os.makedirs(d)\n"
        "open(os.path.join(d, 'note.txt'), 'w').write('the job note\\n')\n"
        "print('swapping', flush=True)\n"
        "end = time.time() + 6\n"
        "while time.time() < end:\n"
        "    os.rename(d, real)\n"
        f"    os.symlink({str(secret_dir)!r}, d)\n"
        "    time.sleep(0.001)\n"
        "    os.unlink(d)\n"
        "    os.rename(real, d)\n"
        "print('done', flush=True)\n",
    )
    result = env.run("submit", "python-script", "--code", str(code), "--follow", timeout=300,
                     extra_env={"JOBSUB_OUTPUT_SYNC_SECONDS": "0.5"})  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    store = Path(env.vars["XDG_DATA_HOME"]) / "jobsub" / "store"
    leaked = [p for p in store.rglob("*") if p.is_file() and b"HOST SECRET" in p.read_bytes()]
    assert not leaked, leaked
    notes = [p for p in store.rglob("note.txt") if ".jobsub" not in p.parts]
    assert len(notes) == 1 and notes[0].read_text() == "the job note\n"


def test_a_job_on_the_local_store_cannot_touch_other_objects_or_leave_setuid_files(
    request, tmp_path: Path, monkeypatch, docker_harness: ExecutorHarness, docker_engine
) -> None:
    import os
    import stat

    env = _env(request, tmp_path, monkeypatch, docker_harness, "local")
    other = tmp_path / "other.txt"
    other.write_text("someone else's data\n")
    env.run("upload", str(other), f"s3://{env.bucket}/shared/other.txt", check=True)
    store = Path(env.vars["XDG_DATA_HOME"]) / "jobsub" / "store"
    target = next(p for p in store.rglob("other.txt") if ".jobsub" not in p.parts)
    code = code_folder(
        tmp_path,
        "import os, shutil\n"
        f"target = {str(target)!r}\n"
        "for attempt in (lambda: open(target, 'w').write('rewritten by a job\\n'),\n"
        "                lambda: shutil.copy('/bin/sh', os.path.join(os.path.dirname(target), 'sh')),\n"
        "                lambda: os.chmod(os.path.join(os.path.dirname(target), 'sh'), 0o4755)):\n"
        "    try:\n"
        "        attempt()\n"
        "        print('done', flush=True)\n"
        "    except OSError as exc:\n"
        "        print('refused', exc.errno, flush=True)\n"
        "mine = os.path.join(os.environ['JOBSUB_OUTPUT_DIR'], 'sh')\n"  # its own folder: allowed, as its own uid
        "shutil.copy('/bin/sh', mine)\n"
        "os.chmod(mine, 0o4755)\n"
        "print('own setuid copy', oct(os.stat(mine).st_mode), flush=True)\n",
    )
    result = env.run("submit", "python-script", "--code", str(code), "--follow", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "own setuid copy 0o104755" in result.stdout
    assert result.stdout.count("refused 2") == 3, result.stdout  # ENOENT: the store is not there to write to
    assert target.read_text() == "someone else's data\n"
    setuid_root = [
        p for p in store.rglob("*") if p.is_file() and p.stat().st_uid == 0 and p.stat().st_mode & stat.S_ISUID
    ]
    assert setuid_root == []
    copied = [p for p in store.rglob("sh") if ".jobsub" not in p.parts]
    assert len(copied) == 1 and copied[0].stat().st_uid == os.getuid()  # the job's own output, a plain file
    assert not copied[0].stat().st_mode & (stat.S_ISUID | stat.S_ISGID | 0o111)
    # and the job's copy (its own uid's) does not keep the bit in its outputs folder on the host either
    runs = Path(env.vars["XDG_STATE_HOME"]) / "jobsub" / "runs"
    assert not [p for p in runs.rglob("*") if p.is_file() and not p.is_symlink() and p.stat().st_mode & stat.S_ISUID]


def test_host_networking_is_refused_unless_the_endpoint_is_loopback(request, tmp_path: Path, monkeypatch) -> None:
    """`--docker-network host` on a profile without a loopback endpoint: one line, exit 2, before the engine is
    even asked (no engine listens here) and before anything is uploaded."""
    harness = ExecutorHarness(kind="docker", profile_settings={"executor": "docker", "docker": {}})
    env = _env(request, tmp_path, monkeypatch, harness, "local")
    env.vars["DOCKER_HOST"] = f"unix://{tmp_path}/no-engine.sock"
    env.run("profile", "add", "hostnet", "--storage", "local", "--jobs-uri", f"s3://{env.bucket}/jobs/",
            "--executor", "docker", "--docker-network", "host", "--use", check=True)  # fmt: skip
    result = env.run("submit", "python-script", "--code", str(code_folder(tmp_path, "print('never')\n")))
    assert result.returncode == 2 and _errors(result.stderr) == [
        "error: docker.network=host gives a job the engine host's whole network; it is only for a loopback storage "
        "endpoint (this profile has none): unset it (`jobsub profile add ... --docker-network bridge`)"
    ], result.stderr
    _nothing_recorded(env)
