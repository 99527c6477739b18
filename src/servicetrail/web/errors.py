"""Every error an HTTP client can get: a status and a message, never a stack."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..store.limits import SearchTooBroad
from .fairness import Busy

log = logging.getLogger("servicetrail.web")
NOT_FOUND = {"error": "not_found", "message": "no such record"}


class ParameterError(ValueError):
    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.message = message


def bad_parameter(parameter: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=422, content={
        "error": "invalid_parameter", "parameter": parameter, "message": f"{parameter}: {message}"})


def install(app: FastAPI) -> None:
    @app.exception_handler(ParameterError)
    async def _parameter(_: Request, exc: ParameterError) -> JSONResponse:
        return bad_parameter(exc.parameter, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body", "header")]
        name = ".".join(where) or "request"
        return bad_parameter(name, str(first.get("msg", "invalid value")))

    @app.exception_handler(SearchTooBroad)
    async def _too_broad(_: Request, exc: SearchTooBroad) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "search_too_broad", "message": str(exc)})

    @app.exception_handler(Busy)
    async def _busy(_: Request, exc: Busy) -> JSONResponse:
        return JSONResponse(status_code=429, content={"error": "too_many_requests", "message": str(exc)},
                            headers={"Retry-After": str(exc.retry_after)})

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return JSONResponse(status_code=404, content=NOT_FOUND)
        body = {"error": "unauthorized" if exc.status_code == 401 else "error", "message": str(exc.detail)}
        return JSONResponse(status_code=exc.status_code, content=body, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"error": "internal", "message": "internal error; it has been logged"})
