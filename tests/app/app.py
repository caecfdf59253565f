"""A real FastAPI service, logging the way sidewatch's users configure structlog.

sidewatch's end-to-end tests run this app under uvicorn and tail the JSON log file it
writes, so the lines, the rotation behaviour and the timing are those of the real
stack (FastAPI + structlog + a stdlib ``logging`` handler), not a simulation.

Configuration (environment variables, read once at import):

``APP_LOG_PATH``       the log file (required).
``APP_LOG_HANDLER``    ``rotating`` (``RotatingFileHandler``: rename → new inode, backups
                       ``.1``…``.N``), ``file`` (plain ``FileHandler``: keeps writing into
                       its file even after someone renames it) or ``watched``
                       (``WatchedFileHandler``: reopens the path when it changes).
``APP_LOG_MAX_BYTES``  ``maxBytes`` of the rotating handler (0: never rotate).
``APP_LOG_BACKUPS``    ``backupCount`` of the rotating handler.
``APP_VERSION``        logged as ``version`` on every record and returned by ``/health``.
``APP_ERROR_RATIO``    share of ``/checkout`` calls that fail (default 0). Deterministic:
                       call i (1, 2, …) fails when ``floor(i·r)`` steps up, so exactly
                       ``floor(n·r)`` of the first n calls fail, evenly spread (0.25: every
                       4th call; 0.02: every 50th).
``APP_EXCEPTION_TYPE`` the exception a failing ``/checkout`` raises (default
                       ``TimeoutError``): a builtin exception of that name, else a new
                       ``Exception`` subclass so named.
``APP_EXTRA_LATENCY_MS`` milliseconds every ``/checkout`` call sleeps (default 0).
``APP_OTEL``           unset (default): no OpenTelemetry SDK, a middleware plays the tracer.
                       ``grpc`` or ``http``: the real OTel Python SDK — FastAPI
                       instrumentation, a ``BatchSpanProcessor`` (200 ms schedule) and the
                       OTLP span exporter of that protocol, configured by the standard
                       ``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_ENDPOINT``…); the log
                       records' ``trace_id``/``span_id`` are then those of the real
                       current span, as users wire it.

Endpoints:

``GET /health``        ``{"status": "ok", "version": APP_VERSION}``.
``GET /work?n=K``      logs K ``request finished`` records, each with a fresh uuid4
                       ``request_id``, and returns those ids so a test knows exactly what
                       was written. ``status`` (default 200) sets the logged status; 5xx
                       are logged at level ``error``.
``GET /error``         raises and logs the exception with ``log.exception`` (structlog
                       renders the traceback into the ``exception`` key); answers 500.
``GET /checkout``      one request whose behaviour depends on the version's settings
                       above (what a deployment changes): sleeps ``APP_EXTRA_LATENCY_MS``;
                       a failing call raises ``APP_EXCEPTION_TYPE``, logs it with
                       ``log.exception`` (``exception_type`` = its name) and answers 500.
                       Every call logs one ``request finished`` (``path``, ``status``,
                       ``duration_ms``, ``request_id``; level ``error`` for a 500) and
                       returns ``{"request_id", "status", "call"}``.
"""

from __future__ import annotations

import builtins
import contextvars
import logging
import logging.handlers
import os
import secrets
import threading
import time
import uuid
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

APP_VERSION = os.environ.get("APP_VERSION", "1.0.0")
APP_ERROR_RATIO = float(os.environ.get("APP_ERROR_RATIO", "0") or 0)
APP_EXCEPTION_TYPE = os.environ.get("APP_EXCEPTION_TYPE", "TimeoutError") or "TimeoutError"
APP_EXTRA_LATENCY_MS = float(os.environ.get("APP_EXTRA_LATENCY_MS", "0") or 0)
if not 0.0 <= APP_ERROR_RATIO <= 1.0:
    raise SystemExit(f"APP_ERROR_RATIO={APP_ERROR_RATIO!r}: expected a share between 0 and 1")


def _exception_class(name: str) -> type[Exception]:
    """The builtin exception called `name`, else a new Exception subclass so named."""
    found = getattr(builtins, name, None)
    if isinstance(found, type) and issubclass(found, Exception):
        return found
    return type(name, (Exception,), {})


CHECKOUT_EXCEPTION = _exception_class(APP_EXCEPTION_TYPE)

APP_OTEL = os.environ.get("APP_OTEL", "")
if APP_OTEL not in ("", "grpc", "http"):
    raise SystemExit(f"APP_OTEL={APP_OTEL!r}: expected grpc, http or unset")

# What OpenTelemetry's current span would give. Without APP_OTEL the OTel SDK is not
# used, so a middleware plays the tracer: one trace/span id per request, read by a
# processor exactly as users read `trace.get_current_span()`.
_current_span: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "current_span", default=None
)


def _otel_tracer_provider():
    """The real SDK, as users set it up: resource from OTEL_* variables, a batch
    processor, the OTLP exporter of the chosen protocol."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if APP_OTEL == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    return provider


_tracer_provider = _otel_tracer_provider() if APP_OTEL else None


def add_trace_context(_logger, _method, event_dict):
    """structlog processor: trace_id/span_id (hex) of the current span, if any."""
    if _tracer_provider is not None:
        from opentelemetry import trace

        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event_dict["trace_id"] = format(ctx.trace_id, "032x")
            event_dict["span_id"] = format(ctx.span_id, "016x")
        return event_dict
    span = _current_span.get()
    if span is not None:
        event_dict["trace_id"], event_dict["span_id"] = span
    return event_dict


def add_version(_logger, _method, event_dict):
    """structlog processor: the running version, which deployment detection reads."""
    event_dict.setdefault("version", APP_VERSION)
    return event_dict


# Processors that build the event dict. In the structlog chain for structlog's own
# calls, and as `foreign_pre_chain` so any stdlib record sent to the handler is shaped
# the same way.
SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    add_trace_context,
    add_version,
]


def _make_handler() -> logging.Handler:
    path = os.environ["APP_LOG_PATH"]
    kind = os.environ.get("APP_LOG_HANDLER", "rotating")
    if kind == "rotating":
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path,
            maxBytes=int(os.environ.get("APP_LOG_MAX_BYTES", "0")),
            backupCount=int(os.environ.get("APP_LOG_BACKUPS", "5")),
            encoding="utf-8",
        )
    elif kind == "file":
        handler = logging.FileHandler(path, encoding="utf-8")
    elif kind == "watched":
        handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    else:
        raise SystemExit(f"APP_LOG_HANDLER={kind!r}: expected rotating, file or watched")
    # structlog's recommended stdlib integration: the handler's formatter renders the
    # JSON line. (A plain logging.Formatter would append `log.exception`'s traceback as
    # raw text lines after the JSON — a real trap of this setup, but not our subject.)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=SHARED_PROCESSORS,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,  # traceback → "exception" string
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    return handler


def _configure_logging() -> structlog.stdlib.BoundLogger:
    # A dedicated, non-propagating stdlib logger: only the app's JSON lines reach the
    # file (uvicorn's plain-text access and error logs stay on stderr, as in production).
    std = logging.getLogger("app")
    std.handlers[:] = [_make_handler()]
    std.setLevel(logging.INFO)
    std.propagate = False

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger("app")


log = _configure_logging()


@asynccontextmanager
async def lifespan(_app: FastAPI):
    log.info("app started", pid=os.getpid())
    yield
    log.info("app stopping", pid=os.getpid())
    if _tracer_provider is not None:
        _tracer_provider.shutdown()  # exports the spans still batched


app = FastAPI(lifespan=lifespan)

if _tracer_provider is not None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_tracer_provider)
else:

    @app.middleware("http")
    async def trace_middleware(request: Request, call_next):
        token = _current_span.set((secrets.token_hex(16), secrets.token_hex(8)))
        try:
            return await call_next(request)
        finally:
            _current_span.reset(token)


@app.get("/health")
def health():
    return {"status": "ok", "version": APP_VERSION}


@app.get("/work")
def work(n: int = Query(1, ge=0, le=100_000), status: int = 200):
    # Plain `def`: FastAPI runs it in its threadpool, so a large n does not block the
    # event loop (and /health stays responsive while tests drive load).
    level = log.error if status >= 500 else log.info
    ids = []
    for _ in range(n):
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        level(
            "request finished",
            request_id=request_id,
            status=status,
            duration_ms=round((time.perf_counter() - started) * 1000 + 1.0, 3),
            path="/work",
        )
        ids.append(request_id)
    return {"request_ids": ids}


@app.get("/error")
def error():
    request_id = str(uuid.uuid4())
    try:
        raise ZeroDivisionError("division by zero")  # what a real handler bug looks like
    except ZeroDivisionError:
        log.exception("unhandled error", request_id=request_id, path="/error", status=500)
    return JSONResponse({"error": "internal", "request_id": request_id}, status_code=500)


@app.get("/login")
def login(request: Request, user: str, password: str):
    # A leak real apps have: the handler logs the credentials and headers it was given.
    # sidewatch's `redact` must keep them from leaving the pod.
    request_id = str(uuid.uuid4())
    authorization = request.headers.get("authorization", "")
    log.info(
        "login attempt",
        request_id=request_id,
        path="/login",
        status=200,
        user=user,
        password=password,
        authorization=authorization,
        headers={"authorization": authorization, "user-agent": request.headers.get("user-agent", "")},
    )
    return {"request_id": request_id}


_checkout_lock = threading.Lock()
_checkout_calls = 0


@app.get("/checkout")
def checkout():
    # Plain `def` (threadpool): the latency sleep does not block /health.
    global _checkout_calls
    started = time.perf_counter()
    with _checkout_lock:
        _checkout_calls += 1
        call = _checkout_calls
    # Deterministic failures: floor(call·r) steps up on exactly floor(n·r) of n calls.
    fails = int(call * APP_ERROR_RATIO + 1e-9) > int((call - 1) * APP_ERROR_RATIO + 1e-9)
    request_id = str(uuid.uuid4())
    if APP_EXTRA_LATENCY_MS > 0:
        time.sleep(APP_EXTRA_LATENCY_MS / 1000)  # the version's extra latency
    status = 200
    if fails:
        status = 500
        try:
            raise CHECKOUT_EXCEPTION(f"checkout call {call} failed")
        except Exception:
            log.exception(
                "unhandled error",
                request_id=request_id,
                path="/checkout",
                status=500,
                exception_type=APP_EXCEPTION_TYPE,
            )
    level = log.error if status >= 500 else log.info
    level(
        "request finished",
        request_id=request_id,
        path="/checkout",
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    body = {"request_id": request_id, "status": status, "call": call}
    if status >= 500:
        body["exception_type"] = APP_EXCEPTION_TYPE
    return JSONResponse(body, status_code=status)
