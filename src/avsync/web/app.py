"""The FastAPI application of ``avsync serve``.

Routes: ``/`` (the page), ``/static/*`` (its script and style, served from the
package: no CDN), ``POST /api/upload`` (the video as the raw request body),
``/api/jobs/{id}`` (state, progress, verdict), ``/api/jobs/{id}/plot.png``,
``/api/jobs/{id}/video`` (the upload, for the preview) and
``/api/jobs/{id}/fixed?offset_ms=X`` (the corrected copy, as a download; the
job's files are removed once it is sent).
"""
from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path
from urllib.parse import unquote

import filetype
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from avsync.constants import MAX_SEARCH_MS
from avsync.web.jobs import JobManager, WebSettings

STATIC = Path(__file__).parent / "static"
#: Bytes read to recognise the container by its content (filetype needs 261).
SNIFF_BYTES = 8192
#: How often idle jobs are looked for (s).
SWEEP_EVERY_S = 30.0

_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; media-src 'self'; object-src 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def create_app(settings: WebSettings | None = None) -> FastAPI:
    settings = settings or WebSettings()
    jobs = JobManager(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async def sweeper():
            while True:
                await asyncio.sleep(min(SWEEP_EVERY_S, settings.ttl_s))
                jobs.sweep()

        task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            task.cancel()
            jobs.close()  # every temp file goes at shutdown

    app = FastAPI(title="avsync", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.jobs = jobs

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in _HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/limits")
    async def limits():
        return {"max_upload_bytes": settings.max_upload_bytes, "max_pending": settings.max_pending}

    @app.post("/api/upload")
    async def upload(request: Request):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_upload_bytes):
            raise HTTPException(413, f"the file is larger than the limit of {_mb(settings.max_upload_bytes)}")
        job = jobs.new(unquote(request.headers.get("x-filename", "video")))
        if job is None:
            raise HTTPException(503, "the server is busy with other uploads; try again in a moment")
        part = job.folder / "upload.part"
        size = 0
        try:
            with open(part, "wb") as fh:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > settings.max_upload_bytes:
                        raise HTTPException(413, f"the file is larger than the limit of "
                                                 f"{_mb(settings.max_upload_bytes)}")
                    await run_in_threadpool(fh.write, chunk)
            if size == 0:
                raise HTTPException(400, "the upload is empty")
            with open(part, "rb") as fh:
                kind = filetype.guess(fh.read(SNIFF_BYTES))
            if kind is None or not kind.mime.startswith("video/"):
                seen = f" (its content looks like {kind.mime})" if kind else ""
                raise HTTPException(415, f"this is not a video file{seen}")
            job.input = part.rename(job.folder / f"input.{kind.extension}")
            job.mime = kind.mime
        except BaseException:
            jobs.remove(job.id)
            raise
        jobs.submit(job)
        return {"id": job.id}

    def _job(jid: str):
        job = jobs.get(jid)
        if job is None:
            raise HTTPException(404, "no such upload (it may have expired)")
        return job

    @app.get("/api/jobs/{jid}")
    async def status(jid: str):
        return _job(jid).public()

    @app.get("/api/jobs/{jid}/plot.png")
    async def plot(jid: str):
        job = _job(jid)
        if job.plot is None:
            raise HTTPException(404, "no plot for this upload")
        return FileResponse(job.plot, media_type="image/png")

    @app.get("/api/jobs/{jid}/video")
    async def video(jid: str):
        job = _job(jid)
        if job.input is None:
            raise HTTPException(404, "no video")
        return FileResponse(job.input, media_type=job.mime)

    @app.get("/api/jobs/{jid}/fixed")
    async def fixed(jid: str, offset_ms: float):
        job = _job(jid)
        if job.state != "done":
            raise HTTPException(409, "the analysis has not finished")
        if not math.isfinite(offset_ms) or abs(offset_ms) > MAX_SEARCH_MS:
            raise HTTPException(422, f"offset_ms must be within ±{MAX_SEARCH_MS:.0f}")
        import avsync
        from avsync.errors import AvsyncError

        out = job.folder / f"fixed{job.input.suffix}"
        try:
            await run_in_threadpool(avsync.correct, job.input, out, offset_ms=offset_ms, overwrite=True)
        except AvsyncError as exc:
            raise HTTPException(422, str(exc)) from None
        stem = Path(job.name).stem or "video"
        return FileResponse(out, media_type=job.mime, filename=f"{stem}.fixed{job.input.suffix}",
                            background=BackgroundTask(jobs.remove, job.id))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=_HEADERS)

    return app


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:g} MB"
