"""A stand-in for Huawei Cloud ModelArts' v2 training-job API, on 127.0.0.1.

A real ModelArts cannot run here (it is a cloud service), so this small HTTP server implements the
documented subset jobsub uses, and behaves as the API reference describes:

    GET    /v2/{project_id}/training-job-flavors                               flavors
    POST   /v2/{project_id}/training-jobs                                      create (201)
    GET    /v2/{project_id}/training-jobs/{id}                                 show (404 when unknown)
    POST   /v2/{project_id}/training-job-searches                              list/search
    POST   /v2/{project_id}/training-jobs/{id}/actions  {"action_type": "terminate"}   stop (202)
    DELETE /v2/{project_id}/training-jobs/{id}                                 delete (202)
    GET    /v2/{project_id}/training-jobs/{id}/tasks/{task}/logs/preview      log preview

What it checks, as the real service does:
- **Signatures.** Every request must carry the SDK's ``SDK-HMAC-SHA256`` Authorization header: the stand-in
  recomputes the canonical request (method, path, sorted query, signed headers, body hash) and the HMAC
  with the secret key of the access key named, and refuses a missing or wrong signature, or an X-Sdk-Date
  more than 15 minutes off, with 401 APIGW.0301.
- **Project.** A project id other than the stand-in's gets 403 (modelled on IAM's answer to a project the
  credentials do not belong to).
- **Bodies.** A create body with a field the SDK's own ``Job`` model does not know, an unknown flavor, an
  image the registry does not hold, or a missing command is 400 ModelArts.0104 with the reason.

Each job really runs: its ``algorithm.command`` as a local process (``bash -c``, in its own session) with
the job's ``environments`` only (no AWS credentials of this process leak in), against the moto store the
tests use. Phases go Creating -> Pending (secondary phase "queuing"; a flavor with ``capacity: 0`` keeps
jobs there) -> Running -> Completed / Failed (the task's exit code, 128+N for a signal) / Terminated.
terminate sends SIGTERM to the job's process group and SIGKILL after ``stop_grace`` seconds. The job's
output is kept for the log preview and exported, when the job names ``spec.log_export_path``, to
``<obs_url>/modelarts-job-<id>-worker-0.log`` in the store at the end.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

EMPTY_HASH = hashlib.sha256(b"").hexdigest()
_AUTH_RE = re.compile(r"SDK-HMAC-SHA256 Access=([^,]+), SignedHeaders=([^,]+), Signature=([0-9a-f]+)$")
_MAX_LOG = 1 << 20


def unknown_fields(model: str, data: Any, where: str = "") -> list[str]:
    """Fields of `data` that the SDK's model `model` (huaweicloudsdkmodelarts.v1) does not define, as dotted
    paths. The SDK's models are generated from the API definition, so this is the API's own field list."""
    import huaweicloudsdkmodelarts.v1 as v1

    cls = getattr(v1, model, None)
    if cls is None or not isinstance(data, dict):
        return []
    by_json = {json_key: cls.openapi_types[attr] for attr, json_key in cls.attribute_map.items()}
    found: list[str] = []
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in by_json:
            found.append(path)
            continue
        kind = by_json[key]
        inner = re.sub(r"^(list\[|dict\(str, )|[\])]$", "", kind)
        if kind.startswith("list[") and isinstance(value, list):
            for i, item in enumerate(value):
                found += unknown_fields(inner, item, f"{path}[{i}]")
        elif not kind.startswith("dict("):
            found += unknown_fields(inner, value, path)
    return found


@dataclass
class Flavor:
    flavor_id: str
    cpus: int = 2
    gpus: int = 0
    memory_gib: int = 8
    capacity: int = 100  # jobs that can run at once; 0 keeps every job Pending ("queuing")

    def as_json(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "cpu": {"arch": "x86", "core_num": self.cpus},
            "memory": {"size": self.memory_gib, "unit": "GB"},
        }
        if self.gpus:
            info["gpu"] = {"unit_num": self.gpus, "product_name": "NVIDIA-V100", "memory": "32GB"}
        return {
            "flavor_id": self.flavor_id,
            "flavor_name": self.flavor_id,
            "flavor_type": "GPU" if self.gpus else "CPU",
            "billing": {"code": self.flavor_id, "unit_num": 1},
            "flavor_info": info,
        }


@dataclass
class TrainingJob:
    id: str
    body: dict[str, Any]
    created: float = field(default_factory=time.time)
    phase: str = "Creating"
    secondary: str = "Creating"
    exit_code: int | None = None
    message: str = ""
    output: bytearray = field(default_factory=bytearray)
    proc: subprocess.Popen | None = None
    terminate: bool = False
    started: float | None = None
    ended: float | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def as_json(self) -> dict[str, Any]:
        algorithm = dict(self.body.get("algorithm") or {})
        algorithm["environments"] = [{k: v} for k, v in (algorithm.get("environments") or {}).items()]
        status: dict[str, Any] = {
            "phase": self.phase,
            "secondary_phase": self.secondary,
            "duration": int(((self.ended or time.time()) - self.started) * 1000) if self.started else 0,
            "tasks": ["worker-0"],
            "start_time": int((self.started or 0) * 1000),
        }
        if self.exit_code is not None or self.message:
            status["task_statuses"] = [{"task": "worker-0", "exit_code": self.exit_code, "message": self.message}]
        return {
            "kind": self.body.get("kind", "job"),
            "metadata": {**(self.body.get("metadata") or {}), "id": self.id, "create_time": int(self.created * 1000)},
            "status": status,
            "algorithm": algorithm,
            "spec": self.body.get("spec") or {},
        }


class ModelArtsStandIn:
    """The server and its state. ``start()`` binds a free port; ``stop()`` kills every job and closes it."""

    def __init__(
        self,
        ak: str,
        sk: str,
        project_id: str,
        s3_endpoint: str,
        s3_key: tuple[str, str],
        flavors: list[Flavor],
        images: set[str],
        pending_seconds: float = 0.3,
        stop_grace: float = 30.0,
    ) -> None:
        self.keys = {ak: sk}
        self.project_id = project_id
        self.s3_endpoint = s3_endpoint
        self.s3_key = s3_key
        self.flavors = {f.flavor_id: f for f in flavors}
        self.images = set(images)
        self.pending_seconds = pending_seconds
        self.stop_grace = stop_grace
        self.jobs: dict[str, TrainingJob] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status): what the tests inspect
        self.create_bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> str:
        standin = self

        class Handler(_Handler):
            server_state = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        for job in list(self.jobs.values()):
            self._kill(job, signal.SIGKILL)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- jobs ----------------------------------------------------------------------------------------------
    def create(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.create_bodies.append(body)
        unknown = unknown_fields("Job", body)
        if unknown:
            return 400, _error("ModelArts.0104", f"Parameter error: unknown field {', '.join(unknown)}")
        algorithm = body.get("algorithm") or {}
        resource = (body.get("spec") or {}).get("resource") or {}
        name = (body.get("metadata") or {}).get("name") or ""
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            return 400, _error("ModelArts.0104", f"Parameter error: metadata.name {name!r}")
        if resource.get("flavor_id") not in self.flavors:
            return 400, _error("ModelArts.2708", f"flavor {resource.get('flavor_id')} does not exist")
        image = (algorithm.get("engine") or {}).get("image_url")
        if image not in self.images:
            return 400, _error("ModelArts.2796", f"image {image} not found in SWR or not shared with ModelArts")
        if not algorithm.get("command"):
            return 400, _error("ModelArts.0104", "Parameter error: algorithm.command is required for a custom image")
        with self._lock:
            if any((j.body.get("metadata") or {}).get("name") == name for j in self.jobs.values()):
                return 400, _error("ModelArts.2709", f"training job name {name} already exists")
            job = TrainingJob(str(uuid.uuid4()), body)
            self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return 201, job.as_json()

    def _running_on(self, flavor: str) -> int:
        return sum(
            1
            for j in self.jobs.values()
            if j.phase in ("Running", "Terminating") and j.body["spec"]["resource"]["flavor_id"] == flavor
        )

    def _run(self, job: TrainingJob) -> None:
        time.sleep(0.1)
        flavor = self.flavors[job.body["spec"]["resource"]["flavor_id"]]
        with self._lock:
            if job.terminate:
                return self._finish(job, "Terminated", None)
            job.phase, job.secondary = "Pending", "queuing"
        deadline = time.monotonic() + self.pending_seconds
        while True:
            with self._lock:
                if job.terminate:
                    return self._finish(job, "Terminated", None)
                if time.monotonic() >= deadline and self._running_on(flavor.flavor_id) < flavor.capacity:
                    job.phase, job.secondary, job.started = "Running", "Running", time.time()
                    job.proc = self._spawn(job)
                    break
            time.sleep(0.05)
        assert job.proc is not None and job.proc.stdout is not None
        for chunk in iter(lambda: job.proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            job.output += chunk
            del job.output[: max(0, len(job.output) - _MAX_LOG)]
        code = job.proc.wait()
        code = 128 - code if code < 0 else code
        with self._lock:
            if job.terminate:
                self._finish(job, "Terminated", code)
            else:
                self._finish(job, "Completed" if code == 0 else "Failed", code)
        self._export_log(job)

    def _finish(self, job: TrainingJob, phase: str, code: int | None) -> None:
        job.phase, job.secondary, job.exit_code, job.ended = phase, phase, code, time.time()
        if phase == "Failed":
            job.message = f"the process exited with code {code}"
        job.done.set()

    def _spawn(self, job: TrainingJob) -> subprocess.Popen:
        algorithm = job.body["algorithm"]
        env = {
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "MA_JOB_DIR": "/home/ma-user/modelarts/user-job-dir",
            "MA_CURRENT_IP": "127.0.0.1",
            "MA_NUM_HOSTS": "1",
            **{str(k): str(v) for k, v in (algorithm.get("environments") or {}).items()},
        }
        return subprocess.Popen(
            ["bash", "-c", algorithm["command"]],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _kill(self, job: TrainingJob, sig: int) -> None:
        if job.proc is not None and job.proc.poll() is None:
            try:
                os.killpg(job.proc.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self, job: TrainingJob) -> None:
        with self._lock:
            if job.done.is_set() or job.terminate:
                return
            job.terminate = True
            if job.proc is None:
                return  # Creating / Pending: the runner thread ends it as Terminated
            job.phase, job.secondary = "Terminating", "Terminating"
        self._kill(job, signal.SIGTERM)

        def hard_stop() -> None:
            if not job.done.wait(self.stop_grace):
                self._kill(job, signal.SIGKILL)

        threading.Thread(target=hard_stop, daemon=True).start()

    def _export_log(self, job: TrainingJob) -> None:
        obs_url = ((job.body.get("spec") or {}).get("log_export_path") or {}).get("obs_url")
        if not obs_url:
            return
        import boto3

        parts = urlsplit(obs_url)
        key = parts.path.lstrip("/")
        key = (key.rstrip("/") + "/" if key else "") + f"modelarts-job-{job.id}-worker-0.log"
        client = boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.s3_key[0],
            aws_secret_access_key=self.s3_key[1],
        )
        client.put_object(Bucket=parts.netloc, Key=key, Body=bytes(job.output))

    # -- signatures ----------------------------------------------------------------------------------------
    def signature_problem(self, method: str, path: str, headers: dict[str, str], body: bytes) -> str | None:
        """Why the request's SDK-HMAC-SHA256 signature does not hold, or None when it does."""
        auth = headers.get("authorization", "")
        match = _AUTH_RE.match(auth)
        if not match:
            return "missing or malformed Authorization (SDK-HMAC-SHA256 expected)"
        access, signed, signature = match.groups()
        secret = self.keys.get(access)
        if secret is None:
            return "unknown access key"
        date = headers.get("x-sdk-date", "")
        try:
            when = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
        except ValueError:
            return "missing X-Sdk-Date"
        if abs((datetime.now(timezone.utc) - when).total_seconds()) > 900:
            return "X-Sdk-Date too far from now"
        names = signed.split(";")
        if "host" not in names or "x-sdk-date" not in names or any(n not in headers for n in names):
            return "Host and X-Sdk-Date must be signed"
        split = urlsplit(path)
        segments = [quote(s, safe="~") for s in unquote(split.path).split("/")]
        canonical_uri = "/".join(segments)
        canonical_uri += "" if canonical_uri.endswith("/") else "/"
        query = sorted(parse_qsl(split.query, keep_blank_values=True))
        canonical_query = "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in query)
        canonical_headers = "".join(f"{n}:{headers[n].strip()}\n" for n in names)
        payload = headers.get("x-sdk-content-sha256") or (hashlib.sha256(body).hexdigest() if body else EMPTY_HASH)
        canonical = "\n".join([method, canonical_uri, canonical_query, canonical_headers, signed, payload])
        to_sign = f"SDK-HMAC-SHA256\n{date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        expected = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
        return None if hmac.compare_digest(expected, signature) else "signature mismatch"


def _error(code: str, message: str) -> dict[str, str]:
    return {"error_code": code, "error_msg": message}


class _Handler(BaseHTTPRequestHandler):
    server_state: ModelArtsStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: pytest shows failures, not access logs
        return

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        problem = state.signature_problem(method, self.path, headers, body)
        status, payload = (
            (401, _error("APIGW.0301", f"Incorrect IAM authentication information: {problem}"))
            if problem
            else self._route(method, body)
        )
        state.requests.append((method, urlsplit(self.path).path, status))
        self._send(status, payload)

    def _route(self, method: str, body: bytes) -> tuple[int, dict[str, Any]]:
        state = self.server_state
        parts = urlsplit(self.path).path.strip("/").split("/")
        if len(parts) < 3 or parts[0] != "v2":
            return 404, _error("APIGW.0101", "The API does not exist or has not been published")
        if parts[1] != state.project_id:
            return 403, _error("APIGW.0302", f"the project {parts[1]} does not belong to these credentials")
        rest = parts[2:]
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, _error("ModelArts.0104", "Parameter error: the body is not JSON")
        if rest == ["training-job-flavors"] and method == "GET":
            flavors = [f.as_json() for f in state.flavors.values()]
            return 200, {"total_count": len(flavors), "flavors": flavors}
        if rest == ["training-jobs"] and method == "POST":
            return state.create(data)
        if rest == ["training-job-searches"] and method == "POST":
            unknown = unknown_fields("JobSearches", data)
            if unknown:
                return 400, _error("ModelArts.0104", f"Parameter error: unknown field {', '.join(unknown)}")
            jobs = sorted(state.jobs.values(), key=lambda j: j.created, reverse=data.get("order", "desc") == "desc")
            offset, limit = int(data.get("offset") or 0), int(data.get("limit") or 10)
            items = [j.as_json() for j in jobs[offset * limit : offset * limit + limit]]
            return 200, {"total": len(jobs), "count": len(items), "limit": limit, "offset": offset, "items": items}
        if len(rest) >= 2 and rest[0] == "training-jobs":
            job = state.jobs.get(rest[1])
            if job is None:
                return 404, _error("ModelArts.2762", f"training job {rest[1]} not found")
            if len(rest) == 2 and method == "GET":
                return 200, job.as_json()
            if len(rest) == 2 and method == "DELETE":
                state.terminate(job)
                del state.jobs[job.id]
                return 202, {}
            if rest[2:] == ["actions"] and method == "POST":
                if data != {"action_type": "terminate"}:
                    return 400, _error("ModelArts.0104", "Parameter error: action_type must be terminate")
                state.terminate(job)
                return 202, {"metadata": {"id": job.id}, "status": {"phase": job.phase}}
            if len(rest) == 6 and rest[2] == "tasks" and rest[4:] == ["logs", "preview"] and method == "GET":
                text = bytes(job.output[-65536:]).decode("utf-8", "replace")
                return 200, {"content": text, "current_size": len(text), "full_size": len(job.output)}
        return 404, _error("APIGW.0101", "The API does not exist or has not been published")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
