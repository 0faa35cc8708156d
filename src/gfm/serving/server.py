"""KServe's REST application under a uvicorn server whose host we choose.

``kserve.ModelServer`` always binds ``0.0.0.0`` (KServe 0.21), so
:func:`build_app` assembles the same FastAPI application KServe serves (V1,
V2, health and ``/metrics`` routes, KServe's error handlers) and :func:`serve`
runs it with uvicorn on ``127.0.0.1`` by default. In a container the
``InferenceService`` passes ``--host 0.0.0.0`` so the pod is reachable.

The bundle loads in a background thread, so the liveness route ``/`` responds
at once. The model routes return 503 until the bundle has loaded and passed
its checks.

KServe's handlers log every 400 and 404 at ERROR with a traceback. Here a
rejected request logs one WARNING line, and a body KServe cannot parse as
JSON gets the same ``invalid body`` message and counter as any other.
"""

from __future__ import annotations

import logging
import threading

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from gfm.serving import metrics
from gfm.serving.config import ServingConfig
from gfm.serving.kserve_import import kserve
from gfm.serving.model import RecommenderModel, RejectedRequest

logger = logging.getLogger(__name__)

_app_built = False

# Prefix of the InvalidInput message of KServe's DataPlane.decode when a
# body sent as application/json is not JSON (checked on KServe 0.21).
KSERVE_JSON_ERROR = "Unrecognized request format: "


def build_app(model: RecommenderModel) -> FastAPI:
    """Register ``model`` and return KServe's REST application serving it.

    KServe keeps one module-level FastAPI application
    (``kserve.model_server.app``), so this can run once per process.

    Raises:
        RuntimeError: on a second call in the same process.
    """
    global _app_built
    if _app_built:
        raise RuntimeError("build_app was already called in this process; KServe "
                           "has one application per process, start another process")
    from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.model_repository_extension import ModelRepositoryExtension
    from kserve.protocol.rest.server import RESTServer

    repository = kserve.ModelRepository()
    repository.update(model)
    dataplane = DataPlane(model_registry=repository)
    extension = ModelRepositoryExtension(model_registry=repository)
    # RESTServer is used only to attach KServe's routes, middleware and error
    # handlers; its own uvicorn configuration (host 0.0.0.0) never runs.
    rest = RESTServer(FASTAPI_APP_IMPORT_STRING, dataplane, extension, http_port=0)
    rest.create_application()
    app = kserve.model_server.app
    # Handlers added after KServe's replace them, because FastAPI keeps one
    # handler per exception class.
    served = frozenset((model.name,))
    app.add_exception_handler(RequestValidationError, _request_validation_handler(served))
    app.add_exception_handler(kserve.errors.InvalidInput, _invalid_input_handler(served))
    app.add_exception_handler(kserve.errors.ModelNotFound, _model_not_found_handler)
    _app_built = True
    return app


def _request_validation_handler(served: frozenset[str]):
    async def handle(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI rejects a V2 body that fails the InferenceRequest schema
        # with 422. Here bad input gets 400 on both protocols, naming the field.
        problems = []
        top_fields = []
        for problem in error.errors():
            # The V2 route accepts InferenceRequest or raw bytes, so pydantic
            # reports each union member; the bytes member's error adds nothing.
            location = [str(part) for part in problem.get("loc", ())
                        if part not in ("body", "InferenceRequest")]
            if location[:1] == ["bytes"]:
                continue
            fields = [part for part in location if not part.isdigit()]
            top_fields.append(fields[0] if fields else "body")
            problems.append(f"{'.'.join(location) or 'body'}: {problem.get('msg')}")
        message = "invalid request: " + ("; ".join(problems) or "body does not match the "
                                         "V2 InferenceRequest schema")
        model = metrics.model_label(request.path_params.get("model_name", ""), served)
        label = metrics.field_label(top_fields[0]) if top_fields else "body"
        metrics.INVALID_REQUESTS.labels(model, label).inc()
        _log_rejection(request, message)
        return JSONResponse(status_code=400, content={"error": message})

    return handle


def _invalid_input_handler(served: frozenset[str]):
    async def handle(request: Request, error: kserve.errors.InvalidInput) -> JSONResponse:
        message = str(error)
        if not isinstance(error, RejectedRequest):
            # KServe's decoder rejected the body before the model saw it, so
            # it is counted here, as the model counts its own rejections.
            if message.startswith(KSERVE_JSON_ERROR):
                detail = message[len(KSERVE_JSON_ERROR):]
                message = (f"invalid body: not valid JSON ({detail}); send a JSON object "
                           "with an instances list")
            model = metrics.model_label(request.path_params.get("model_name", ""), served)
            metrics.INVALID_REQUESTS.labels(model, "body").inc()
        _log_rejection(request, message, getattr(error, "request_id", None))
        return JSONResponse(status_code=400, content={"error": message})

    return handle


async def _model_not_found_handler(request: Request, error: kserve.errors.ModelNotFound
                                   ) -> JSONResponse:
    logger.warning("request to %s (request id %s): %s", request.url.path,
                   request.headers.get("x-request-id"), error)
    return JSONResponse(status_code=404, content={"error": str(error)})


def _log_rejection(request: Request, message: str, request_id: str | None = None) -> None:
    logger.warning("rejected request to %s (request id %s): %s", request.url.path,
                   request_id or request.headers.get("x-request-id"), message)


def serve(config: ServingConfig, host: str = "127.0.0.1", port: int = 8080,
          access_log: bool = False) -> None:
    """Load the bundle of ``config`` and serve it until interrupted.

    Args:
        config: serving settings, including ``bundle_uri``.
        host: address to bind; keep ``127.0.0.1`` outside a container.
        port: TCP port.
        access_log: log one line per request (uvicorn's access log and
            KServe's per-request timing lines).
    """
    kserve.logging.configure_logging()
    # KServe's timing middleware logs every request on kserve.trace at INFO,
    # which costs a few percent of throughput under load.
    logging.getLogger("kserve.trace").setLevel(logging.INFO if access_log else logging.WARNING)

    model = RecommenderModel(config)
    app = build_app(model)
    loader = threading.Thread(target=model.load, name="gfm-bundle-loader", daemon=True)
    loader.start()
    logger.info("serving model %s on http://%s:%d (bundle %s)", config.model_name, host,
                port, config.bundle_uri)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=access_log,
                timeout_keep_alive=65)
    logger.info("server on %s:%d stopped", host, port)
