"""The web view's ASGI app: static pages (all script in static files) and a JSON API over jobsub.web.data.

Pages hold no data: they are fixed HTML files whose script fetches the API and builds the DOM with
textContent, so a job's log or spec can never become markup. Every answer carries a Content-Security-Policy
that forbids inline script, and every JSON answer goes through data.dumps (redacted, finite, bounded).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobsub.errors import JobNotFoundError, JobsubError
from jobsub.redact import redact
from jobsub.web.data import WebData, WebInputError, dumps
from jobsub.web.models import LinesEvent, MetricsEvent, StatusPage
from jobsub.web.security import SecurityMiddleware

STATIC = Path(str(files("jobsub.web") / "static"))
#: how often a follower looks for new log chunks, and for a new state
LOG_POLL_SECONDS = 0.25
STATUS_POLL_SECONDS = 1.0
KEEPALIVE_SECONDS = 15.0
#: images shown inside the page; every other output is a download (an .html or .svg output never runs here)
INLINE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def _json(data: BaseModel | dict[str, Any]) -> Any:
    """A page's model as JSON (``model_dump(mode="json")``: the keys static/*.js reads); a plain dict is an
    error body, which is JSON already."""
    return data.model_dump(mode="json") if isinstance(data, BaseModel) else data


def json_response(data: BaseModel | dict[str, Any], status: int = 200) -> Response:
    return Response(dumps(_json(data)), status_code=status, media_type="application/json")


def _event(kind: str, data: BaseModel | dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {dumps(_json(data))}\n\n"


def _int(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise WebInputError(f"{name} must be a whole number, not {raw!r}") from None


def create_app(data: WebData, token: str | None = None, allowed_hosts: list[str] | None = None) -> Starlette:
    """The app over one profile's jobs. `token`: required on every request (the cookie, ?token= or a
    Bearer header); `allowed_hosts`: the Host headers accepted (DNS rebinding of a loopback server)."""

    def page(name: str):
        def endpoint(request: Request) -> Response:
            return FileResponse(STATIC / name, media_type="text/html; charset=utf-8")

        return endpoint

    def jobs(request: Request) -> Response:
        q = request.query_params
        return json_response(
            data.jobs(
                offset=_int(request, "offset", 0),
                limit=_int(request, "limit", 50),
                state=q.get("state") or None,
                name=q.get("name") or None,
                template=q.get("template") or None,
                sort=q.get("sort") or "created",
                order=q.get("order") or "desc",
            )
        )

    def job(request: Request) -> Response:
        return json_response(data.job(request.path_params["job_id"]))

    def status(request: Request) -> Response:
        return json_response(data.status(request.path_params["job_id"]))

    def log(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if "tail" in request.query_params:
            return json_response(data.log_tail(job_id, _int(request, "tail", 500)))
        return json_response(
            data.log_page(job_id, request.query_params.get("after", ""), _int(request, "max_chunks", 20))
        )

    def log_stream(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        after = request.headers.get("last-event-id") or request.query_params.get("after", "")
        tail = None if after or "tail" not in request.query_params else _int(request, "tail", 500)
        data.chunks(job_id, after)  # an unknown job or a foreign cursor fails now, as a plain 404/400
        data.status(job_id)
        return _sse(_follow_log(data, job_id, after, tail))

    def log_text(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        data.status(job_id)
        return StreamingResponse(
            data.log_text(job_id),
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{job_id}.log"'},
        )

    def log_search(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        query = request.query_params.get("q", "")
        if not query:
            raise WebInputError("q is empty: give the text to look for")
        data.status(job_id)
        lines = (dumps(line.model_dump(mode="json")) + "\n" for line in data.search_log(job_id, query))
        return StreamingResponse(lines, media_type="application/x-ndjson")

    def metrics(request: Request) -> Response:
        return json_response(data.metrics(request.path_params["job_id"], _int(request, "after", 0)))

    def metrics_stream(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        data.status(job_id)
        return _sse(_follow_metrics(data, job_id, _int(request, "after", 0)))

    def results(request: Request) -> Response:
        return json_response(data.results(request.path_params["job_id"]))

    def output(request: Request) -> Response:
        job_id, path = request.path_params["job_id"], request.path_params["path"]
        key, size = data.output(job_id, path)
        suffix = Path(path).suffix.lower()
        inline = request.query_params.get("inline") == "1" and suffix in INLINE_TYPES
        name = Path(path).name.replace('"', "")
        return StreamingResponse(
            data.output_bytes(job_id, key, size),
            media_type=INLINE_TYPES[suffix] if inline else "application/octet-stream",
            headers={
                "Content-Length": str(size),
                "Content-Disposition": "inline" if inline else f'attachment; filename="{name}"',
            },
        )

    def compare(request: Request) -> Response:
        ids = [i for i in request.query_params.get("ids", "").split(",") if i]
        return json_response(data.compare(ids))

    def storage(request: Request) -> Response:
        return json_response(data.storage())

    async def not_found(request: Request, exc: Exception) -> Response:
        return json_response({"error": str(exc)}, 404)

    async def bad_input(request: Request, exc: Exception) -> Response:
        return json_response({"error": str(exc)}, 400)

    async def failed(request: Request, exc: Exception) -> Response:
        return json_response({"error": redact(str(exc))}, 502)

    routes = [
        Route("/", page("jobs.html")),
        Route("/job/{job_id}", page("job.html")),
        Route("/compare", page("compare.html")),
        Route("/storage", page("storage.html")),
        Route("/api/jobs", jobs),
        Route("/api/jobs/{job_id}", job),
        Route("/api/jobs/{job_id}/status", status),
        Route("/api/jobs/{job_id}/log", log),
        Route("/api/jobs/{job_id}/log/stream", log_stream),
        Route("/api/jobs/{job_id}/log/search", log_search),
        Route("/api/jobs/{job_id}/log.txt", log_text),
        Route("/api/jobs/{job_id}/metrics", metrics),
        Route("/api/jobs/{job_id}/metrics/stream", metrics_stream),
        Route("/api/jobs/{job_id}/results", results),
        Route("/api/jobs/{job_id}/outputs/{path:path}", output),
        Route("/api/compare", compare),
        Route("/api/storage", storage),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={JobNotFoundError: not_found, WebInputError: bad_input, JobsubError: failed},
    )
    app.add_middleware(SecurityMiddleware, token=token, allowed_hosts=allowed_hosts)
    return app


def _sse(events: Iterator[str]) -> Response:
    return StreamingResponse(
        events, media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )


def _changed(new: StatusPage, old: StatusPage | None) -> bool:
    """Whether the page would show something new (a heartbeat alone is not)."""
    keys = ("state", "reason", "exit_code", "transitions", "finished", "attempt")
    return old is None or any(getattr(new, k) != getattr(old, k) for k in keys)


def _follow_log(data: WebData, job_id: str, after: str, tail: int | None) -> Iterator[str]:
    """Log lines as they arrive, then the final status. Each batch names its chunk and its number in the
    chunk, and each whole chunk is an event id, so a reconnecting page neither loses nor repeats a line."""
    cursor = after
    if tail is not None:
        first = data.log_tail(job_id, tail)
        cursor = first.cursor
        yield _event("lines", LinesEvent(lines=first.lines, chunk=cursor, batch=-1, done=True), cursor or None)
    last_state: StatusPage | None = None
    last_status = last_sent = 0.0
    finished = False
    while True:
        for key, size in data.chunks(job_id, cursor):
            batches = list(enumerate(data.chunk_lines(job_id, key, size))) or [(0, [])]
            for number, batch in batches:
                done = number == batches[-1][0]
                event = LinesEvent(lines=batch, chunk=key, batch=number, done=done)
                yield _event("lines", event, key if done else None)
            cursor = key
            last_sent = time.monotonic()
        if finished and last_state is not None:
            yield _event("end", last_state)
            return
        now = time.monotonic()
        if now - last_status >= STATUS_POLL_SECONDS:
            last_status = now
            state = data.status(job_id)
            if _changed(state, last_state):  # not every heartbeat: only what the page shows
                yield _event("status", state)
                last_sent = now
            last_state = state
            if state.final:
                finished = True  # one more pass: the runner writes its last chunk before the final status
                continue
        if now - last_sent >= KEEPALIVE_SECONDS:
            last_sent = now
            yield ": keepalive\n\n"
        time.sleep(LOG_POLL_SECONDS)


def _follow_metrics(data: WebData, job_id: str, after: int) -> Iterator[str]:
    """New metrics rows whenever metrics.jsonl changes (it is rewritten whole), until the job is final."""
    count, version = max(0, after), None
    last_sent = time.monotonic()
    while True:
        status = data.status(job_id)
        current = data.metrics_version(job_id)
        if current != version:
            version = current
            got = data.metrics(job_id, count)
            if got.rows or got.count < count:
                yield _event("rows", MetricsEvent(rows=got.rows, from_=count, count=got.count))
                last_sent = time.monotonic()
            count = got.count
        if status.final:
            yield _event("end", {"count": count})
            return
        if time.monotonic() - last_sent >= KEEPALIVE_SECONDS:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
        time.sleep(STATUS_POLL_SECONDS)
