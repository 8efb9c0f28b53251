"""The HTTP app: POST /v1/predict (or /v1/generate), /v1/feedback, health, metrics.

Built per run: the request schema comes from the run's data schema (so /openapi.json shows
the feature names and types), predictions go through the dynamic batcher, and every answer
is logged to the prediction store off the request path. Bad input is answered 4xx with the
field and the reason; nothing a client sends can take the server down.

(No `from __future__ import annotations` here: FastAPI reads the dynamically built request
models from the route signatures at run time.)
"""

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from gradwise.config import ServeSettings
from gradwise.errors import GradwiseError
from gradwise.logs import LOG
from gradwise.run import Run
from gradwise.serving.abstention import Abstention
from gradwise.serving.batcher import DynamicBatcher
from gradwise.serving.feedback import feedback_model, feedback_rows
from gradwise.serving.generate import GenerateRequest, generate_all, generation_events
from gradwise.serving.guard import OPEN_PATHS, GuardMiddleware
from gradwise.serving.metrics import MULTIPROC_ENV, MetricsMiddleware, ServerMetrics
from gradwise.serving.predict import PredictEndpoint, PredictFastPath, invalid_reply
from gradwise.serving.predictor import Predictor, model_version
from gradwise.serving.schemas import instance_codec
from gradwise.serving.store import (
    FeedbackRecord,
    PredictionRecord,
    PredictionStore,
    open_store,
    store_url,
)

log = logging.getLogger(LOG)


class PredictionOut(BaseModel):
    prediction: Any = Field(description="the class label, the value(s), or the text")
    probabilities: dict[str, float] | None = Field(
        None, description="class -> probability, temperature-scaled when the run has one"
    )
    confidence: float | None = Field(None, description="the top probability")
    prediction_set: list[Any] | None = Field(
        None, description="conformal set of classes (when the run has conformal quantiles)"
    )
    interval: list[float] | None = Field(None, description="conformal interval [low, high]")
    steps_ahead: int | list[int] | None = Field(
        None, description="forecasters: each value is for k steps after the window's last row"
    )
    warnings: list[str] | None = Field(
        None,
        description="what the model read differently than sent: a category training never "
        "saw or a number sent for a category (read as <other>), columns it does not read "
        "(ignored); counted in /metrics as gradwise_input_warnings_total{kind}",
    )
    decision: Literal["answer", "abstain"] | None = Field(
        None,
        description="serve --abstain: answer where the certified threshold is met, abstain "
        "(hand to a person) where not; the prediction is given either way; counted in "
        "/metrics as gradwise_decisions_total{model_version, decision}",
    )
    abstain_score: float | None = Field(
        None, description="serve --abstain: the score compared with the threshold (higher: surer)"
    )


class Guarantee(BaseModel):
    alpha: float = Field(description="the error rate among answered instances is at most this")
    delta: float = Field(description="... with confidence 1 - delta")
    threshold: float = Field(description="instances whose abstain_score reaches it are answered")
    n: int = Field(description="validation rows it was certified on")
    score: str = Field(description="what abstain_score is: probability, margin, set_size, ...")
    coverage: float = Field(description="the share of validation rows answered")
    fitted_at: str = Field(description="when it was certified (UTC)")


class PredictResponse(BaseModel):
    request_id: str = Field(description="give it to POST /v1/feedback with the true label")
    model_version: str
    predictions: list[PredictionOut]
    guarantee: Guarantee | None = Field(
        None,
        description="serve --abstain: the guarantee the decisions carry, while inputs stay "
        "like the validation rows it was certified on",
    )


class ErrorResponse(BaseModel):
    error: str
    detail: list[dict[str, Any]] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    413: {"model": ErrorResponse, "description": "body over --max-body-kb"},
    422: {"model": ErrorResponse, "description": "the field and the reason"},
    503: {"model": ErrorResponse, "description": "shutting down"},
}


@dataclass
class ServerState:
    """What the routes share; one per app (per worker process)."""

    run: Run
    settings: ServeSettings
    version: str
    replica_id: str
    metrics: ServerMetrics
    abstention: Abstention | None = None
    batcher: DynamicBatcher[Any, Any] | None = None
    store: PredictionStore | None = None
    store_url: str | None = None
    accepting: bool = False
    notes: list[str] = field(default_factory=list)


def create_app(run: Run | str | Path, settings: ServeSettings = ServeSettings()) -> FastAPI:
    """The ASGI app serving `run` (a Run or a run directory, optimised variants included).

    With several worker processes, $PROMETHEUS_MULTIPROC_DIR (set by the runner) makes
    /metrics add up every worker's numbers (see `serving.metrics`).

    Raises:
        GradwiseError: the run cannot be served (diffusion, masked-LM), a setting is bad, or
            `settings.abstain` is on and the run has no certified abstention threshold.
    """
    run = run if isinstance(run, Run) else Run.load(run)
    is_lm = run.schema.task == "lm"
    if not is_lm:
        run.check_predicts()
    abstention = Abstention.of(run) if settings.abstain else None
    routes = {"/v1/predict", "/v1/feedback", "/v1/generate", "/v1/model", "/healthz", "/readyz"}
    state = ServerState(
        run=run,
        settings=settings,
        version=model_version(run),
        replica_id=settings.replica_id or f"{socket.gethostname()}:{os.getpid()}",
        metrics=ServerMetrics(routes | {"/metrics"}, os.environ.get(MULTIPROC_ENV)),
        abstention=abstention,
        store_url=store_url(settings.store, run.path),
    )
    api_key = settings.api_key()
    if state.store_url is not None:
        open_store(state.store_url).dispose()  # a bad --store fails here, not in a worker
    app = FastAPI(
        title=f"gradwise: {run.config.name}",
        version=state.version,
        description=f"{run.schema.task} model `{run.config.name}` ({run.config.model.arch}); "
        "instances in the model's own schema.",
        lifespan=_lifespan(state),
    )
    app.state.gradwise = state
    _add_error_handlers(app)
    _add_health_routes(app, state)
    if is_lm:
        _add_generate_route(app, state)
    else:
        _add_predict_routes(app, state)
    if api_key is not None:
        _declare_api_key(app)
    app.add_middleware(GuardMiddleware, api_key=api_key, max_body_bytes=settings.max_body_kb * 1024)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app


def _declare_api_key(app: FastAPI) -> None:
    """State in the OpenAPI document what the guard asks for: a bearer token or an X-API-Key
    header on every route but the health checks, so generated clients send it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for path, operations in schema["paths"].items():
            if path not in OPEN_PATHS:
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _lifespan(state: ServerState) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.store_url is not None:
            state.store = PredictionStore(
                state.store_url, state.replica_id, state.settings.flush_interval_s
            )
            state.store.start()
        if state.batcher is not None:
            await state.batcher.start()
        store = state.store
        state.metrics.track(
            lambda: state.batcher.queued_rows if state.batcher else 0,
            lambda: store.pending if store else 0,
        )
        refresher = None
        if state.metrics.multiprocess_dir is not None:  # other workers' scrapes read them
            refresher = asyncio.ensure_future(state.metrics.refresh_forever())
        state.accepting = True
        log.info(
            "serving %s (%s) as replica %s; store: %s",
            state.run.path,
            state.version,
            state.replica_id,
            state.store_url or "off",
        )
        try:
            yield
        finally:
            # uvicorn stops accepting connections and waits for the requests in flight
            # before it gets here; the batcher then answers anything still queued
            state.accepting = False
            if state.batcher is not None:
                await state.batcher.close()
            if state.store is not None:
                state.store.close()
            if refresher is not None:
                refresher.cancel()
            state.metrics.close()

    return lifespan


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{**e, "loc": tuple(e.get("loc", ()))[1:]} for e in exc.errors()]  # drop "body"
        return JSONResponse(invalid_reply(errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # 404, 405 and the like: the same {"error": ...} body as every other error
        return JSONResponse(
            {"error": _http_error_message(request, exc)}, exc.status_code, exc.headers
        )

    @app.exception_handler(GradwiseError)
    async def bad_input(request: Request, exc: GradwiseError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s", request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__})"}, 500)


def _http_error_message(request: Request, exc: StarletteHTTPException) -> str:
    """Starlette's short reason, with what to do instead for the common cases."""
    if exc.status_code == 405:
        allowed = {k.lower(): v for k, v in (exc.headers or {}).items()}.get("allow", "")
        return (
            f"method {request.method} is not allowed on {request.url.path}; "
            f"use {allowed or 'another method'} (see /docs)"
        )
    if exc.status_code == 404:
        return f"no route {request.url.path}; see /docs for the routes"
    return str(exc.detail)


def _add_health_routes(app: FastAPI, state: ServerState) -> None:
    @app.get("/healthz", summary="the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="ready for traffic", responses={503: {"model": ErrorResponse}})
    async def readyz() -> JSONResponse:
        problems = []
        if not state.accepting:
            problems.append("not accepting requests (starting or shutting down)")
        if state.batcher is not None and not state.batcher.is_running:
            problems.append("the batcher is not running")
        if state.store is not None and not state.store.is_alive:
            problems.append("the prediction store writer stopped")
        if problems:
            return JSONResponse({"error": "; ".join(problems)}, status_code=503)
        return JSONResponse({"status": "ready", "model_version": state.version})

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        body, content_type = state.metrics.exposition()
        return Response(body, media_type=content_type)

    @app.get("/v1/model", summary="what is served")
    async def model_info() -> dict[str, Any]:
        schema = state.run.schema
        return {
            "name": state.run.config.name,
            "model_version": state.version,
            "replica_id": state.replica_id,
            "arch": state.run.config.model.arch,
            "kind": schema.kind,
            "task": schema.task,
            "classes": [str(c) for c in schema.classes] if schema.classes else None,
            "features": schema.tabular.columns if schema.tabular else None,
            "temperature": state.run.calibration.temperature,
            "conformal": state.run.calibration.conformal is not None,
            "max_batch": state.settings.max_batch,
            "max_wait_ms": state.settings.max_wait_ms,
            "guarantee": state.abstention.guarantee if state.abstention else None,
        }


def _add_predict_routes(app: FastAPI, state: ServerState) -> None:
    run = state.run
    codec = instance_codec(run.schema)
    metrics = state.metrics

    def on_decisions(answered: int, abstained: int) -> None:
        metrics.count_decisions(state.version, answered, abstained)

    predictor = Predictor(
        run,
        codec,
        on_warnings=metrics.count_warnings,
        abstention=state.abstention,
        on_decisions=on_decisions,
    )

    def on_batch(n_rows: int) -> None:
        metrics.batch_size.observe(n_rows)
        metrics.predictions.inc(n_rows)

    state.batcher = DynamicBatcher(
        predictor,
        max_batch=state.settings.max_batch,
        max_wait_ms=state.settings.max_wait_ms,
        rows=len,
        on_batch=on_batch,
    )
    guarantee = state.abstention.guarantee_json if state.abstention else None
    endpoint = PredictEndpoint(codec, state.batcher, state.version, lambda: state.store, guarantee)
    app.add_middleware(PredictFastPath, endpoint=endpoint)
    Request_ = codec.request  # noqa: N806 - a class

    @app.post(
        "/v1/predict",
        summary="predict for one or more instances",
        response_model=PredictResponse,
        responses=ERRORS,
        openapi_extra={"x-served-by": "PredictFastPath (same models)"},
    )
    async def predict(request: Request, body: Annotated[Request_, Body()]) -> Any:  # type: ignore[valid-type]
        # reached only when the app is mounted without its middleware; same answer
        reply = await endpoint.answer(await request.body())
        headers = {"x-request-id": reply.request_id} if reply.request_id else None
        return Response(reply.body, reply.status, headers, media_type="application/json")

    Feedback = feedback_model(run)  # noqa: N806 - a class

    @app.post(
        "/v1/feedback",
        summary="record the true label of a served prediction",
        status_code=202,
        responses={**ERRORS, 409: {"model": ErrorResponse, "description": "the store is off"}},
    )
    async def feedback(body: Annotated[Feedback, Body()]) -> JSONResponse:  # type: ignore[valid-type]
        if state.store is None:
            return JSONResponse(
                {"error": "the prediction store is off (--store off); feedback is not kept"},
                409,
            )
        now = time.time()
        rows = feedback_rows(run, body)
        for row, label in rows:
            state.store.put(FeedbackRecord(body.request_id, row, now, label))  # type: ignore[attr-defined]
        return JSONResponse(
            {"request_id": body.request_id, "recorded": len(rows)},  # type: ignore[attr-defined]
            202,
        )

    _ = (predict, feedback)


def _add_generate_route(app: FastAPI, state: ServerState) -> None:
    run = state.run

    @app.post(
        "/v1/generate",
        summary="continue a prompt; tokens streamed as server-sent events",
        responses=ERRORS,
    )
    async def generate(body: GenerateRequest) -> Response:
        if not state.accepting:
            return JSONResponse({"error": "the server is shutting down"}, 503)
        request_id = os.urandom(16).hex()
        headers = {"x-request-id": request_id}

        def done(tokens: list[str], probs: list[float]) -> dict[str, Any]:
            return _generation_summary(state, request_id, body, tokens, probs)

        if body.stream:
            events = generation_events(run, body, done)
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        tokens, probs = await run_in_threadpool(generate_all, run, body)
        return JSONResponse(done(tokens, probs), headers=headers)

    _ = generate


def _generation_summary(
    state: ServerState,
    request_id: str,
    body: GenerateRequest,
    tokens: list[str],
    probs: list[float],
) -> dict[str, Any]:
    from gradwise.models.sampling import Generation

    gen = Generation.of(tokens, probs, 0.1)
    summary = {
        "request_id": request_id,
        "model_version": state.version,
        "text": gen.text,
        "n_tokens": len(tokens),
        "perplexity": round(gen.perplexity, 4),
    }
    if state.store is not None:
        mean_p = sum(probs) / len(probs) if probs else None
        state.store.put(
            PredictionRecord(
                request_id,
                time.time(),
                state.version,
                1,
                json.dumps(body.model_dump(mode="json")),
                json.dumps(
                    [
                        {
                            "prediction": gen.text,
                            "perplexity": summary["perplexity"],
                            "confidence": mean_p,  # the mean probability of its tokens
                        }
                    ]
                ),
                mean_p,
            )
        )
    return summary
