"""An OpenAI-compatible HTTP server for a model plus an optional PEFT adapter.

    python -m dojo.infer serve --model data/models/dojo-tiny --adapter runs/sft/model --port 8000

and, from Python (tests, notebooks, the LLM judge), on a free loopback port:

    from dojo.infer.serve import running
    with running("data/models/dojo-tiny", model_name="tiny") as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused")

Endpoints: `GET /v1/models`, `POST /v1/chat/completions` (JSON, or Server-Sent Events with
`"stream": true`), `GET /health`. Prompts go through the model's own chat template.

Notable choices:
- Requests are validated before anything reaches the model: bad JSON, a missing or malformed
  field, an unknown model, `max_tokens` or `temperature` out of range, `n` > 1, a prompt longer
  than the context, a body over `max_body_bytes` each get a 4xx with an OpenAI-style body
  (`{"error": {"message", "type", "param", "code"}}`) naming the field; the server keeps serving.
  An unknown model is a 400 (`code: model_not_found`) as the project's spec asks, where OpenAI
  answers 404.
- One model, one generation at a time: requests queue on a lock, so concurrent clients are all
  answered in turn. At most `max_pending` requests may wait; more get a 429 (`server_busy`),
  which the `openai` client retries with back-off.
- Generation runs in a worker thread (`dojo.infer.generate.ReplyStream`); a streaming client
  that disconnects cancels its generation within one decoding step and frees the model.
- `temperature` defaults to 1.0 as in the OpenAI API; send 0 for greedy, reproducible replies.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from dojo.infer.generate import ReplyStream, SamplingOptions, chat_prompt_ids
from dojo.infer.load import load_for_inference


@dataclass
class ServerLimits:
    """What a single request may ask for, and how many may wait."""

    max_tokens: int = 1024  # upper bound on a request's max_tokens
    default_max_tokens: int = 256  # when the request does not say
    max_prompt_tokens: int | None = None  # None: the model's context length minus 1
    max_body_bytes: int = 1_000_000  # request bodies above this get a 413
    max_pending: int = 64  # requests waiting or running; more get a 429
    max_messages: int = 512


class ApiError(Exception):
    """An error answered as `{"error": {...}}` with an HTTP status, OpenAI style."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.type = {
            401: "authentication_error",
            404: "not_found_error",
            413: "invalid_request_error",
            429: "rate_limit_error",
        }.get(status, "invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_TextPart] | None = None

    def as_dict(self) -> dict:
        """The message as the chat template expects it (`developer` is OpenAI's new `system`)."""
        content = self.content or ""
        if isinstance(content, list):
            content = "".join(p.text for p in content)
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": content}


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat completion request that this server honours.

    Unknown fields are ignored, as other OpenAI-compatible servers do, so clients that send
    extras (`user`, `logit_bias`…) still work.
    """

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None  # the newer name of max_tokens
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    n: int = Field(1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, v):
        stops = [v] if isinstance(v, str) else v or []
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        return stops


def _validation_error(e: ValidationError) -> ApiError:
    first = e.errors()[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    message = first["msg"]
    if first["type"] == "missing":
        message = f"'{param}' is a required property"
    elif param:
        message = f"'{param}': {message} (got {first.get('input')!r})"
    if param == "n":
        message = "this server returns one choice per request: n must be 1"
    return ApiError(400, message, param=param, code="invalid_value")


class ChatServer:
    """The state behind the HTTP routes: one model, its tokenizer, the limits and the queue."""

    def __init__(self, model, tokenizer, model_name: str, limits: ServerLimits | None = None):
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.limits = limits or ServerLimits()
        context = getattr(model.config, "max_position_embeddings", None) or 2048
        self.context = context
        self.max_prompt = self.limits.max_prompt_tokens or context - 1
        self.lock = threading.Lock()  # one generation at a time on this model
        self.pending = threading.BoundedSemaphore(self.limits.max_pending)
        self.active = 0  # requests accepted and not yet finished generating
        self._count = threading.Lock()
        self.created = int(time.time())

    def parse(self, body: bytes) -> ChatRequest:
        """The validated request, or an ApiError saying what is wrong with it."""
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(
                400, f"the request body is not valid JSON: {e}", code="invalid_json"
            ) from e
        if not isinstance(payload, dict):
            raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
        try:
            request = ChatRequest.model_validate(payload)
        except ValidationError as e:
            raise _validation_error(e) from e
        if request.model != self.model_name:
            raise ApiError(
                400,
                f"model {request.model!r} is not served here; this server serves "
                f"{self.model_name!r} (GET /v1/models)",
                param="model",
                code="model_not_found",
            )
        if len(request.messages) > self.limits.max_messages:
            raise ApiError(
                400,
                f"{len(request.messages)} messages: at most {self.limits.max_messages}",
                param="messages",
            )
        if request.messages[-1].role == "assistant":
            raise ApiError(
                400,
                "the last message is the assistant's; end with a user message",
                param="messages",
            )
        return request

    def max_new_tokens(self, request: ChatRequest, prompt_tokens: int) -> int:
        asked = request.max_completion_tokens or request.max_tokens
        param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        if asked is not None and not 1 <= asked <= self.limits.max_tokens:
            raise ApiError(
                400,
                f"{param}={asked} is out of range: this server allows 1..{self.limits.max_tokens}",
                param=param,
                code="invalid_value",
            )
        if prompt_tokens > self.max_prompt:
            raise ApiError(
                400,
                f"the prompt is {prompt_tokens} tokens; this model's limit is {self.max_prompt}",
                param="messages",
                code="context_length_exceeded",
            )
        room = self.context - prompt_tokens
        return max(1, min(asked or self.limits.default_max_tokens, room))

    def open_stream(self, request: ChatRequest) -> ReplyStream:
        """A started ReplyStream for the request; holds a pending slot until it finishes."""
        prompt_ids = chat_prompt_ids(self.tokenizer, [m.as_dict() for m in request.messages])
        options = SamplingOptions(
            max_new_tokens=self.max_new_tokens(request, prompt_ids.shape[1]),
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
        )
        stream = ReplyStream(
            self.model,
            self.tokenizer,
            options=options,
            stop=request.stop,
            lock=self.lock,
            on_finish=self._finished,
            prompt_ids=prompt_ids,
        )
        if not self.pending.acquire(blocking=False):
            raise ApiError(
                429,
                f"the server is busy ({self.limits.max_pending} requests pending); retry shortly",
                code="server_busy",
            )
        with self._count:
            self.active += 1
        return stream.start()

    def _finished(self) -> None:
        with self._count:
            self.active -= 1
        self.pending.release()

    def completion(self, request: ChatRequest, stream: ReplyStream, ident: str) -> dict:
        return {
            "id": ident,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": stream.text},
                    "finish_reason": stream.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _usage(stream),
        }

    def chunks(self, request: ChatRequest, stream: ReplyStream, ident: str) -> Iterator[dict]:
        """The `chat.completion.chunk` objects of a streamed reply, as OpenAI sends them."""
        base = {"id": ident, "object": "chat.completion.chunk", "created": int(time.time())}
        base["model"] = self.model_name

        def chunk(delta: dict, finish: str | None = None) -> dict:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return {**base, "choices": [choice]}

        yield chunk({"role": "assistant", "content": ""})
        for piece in stream:
            yield chunk({"content": piece})
        yield chunk({}, stream.finish_reason)
        if request.stream_options and request.stream_options.include_usage:
            yield {**base, "choices": [], "usage": _usage(stream)}


def _usage(stream: ReplyStream) -> dict:
    return {
        "prompt_tokens": stream.prompt_tokens,
        "completion_tokens": stream.completion_tokens,
        "total_tokens": stream.prompt_tokens + stream.completion_tokens,
    }


async def _read_body(request, limit: int) -> bytes:
    """The request body, refusing (413) more than `limit` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is {declared} bytes; the limit is {limit}")
    body = b""
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise ApiError(413, f"the request body is over the limit of {limit} bytes")
    return body


def create_app(
    server: ChatServer,
    api_key: str | None = None,
):
    """The FastAPI application serving `server`; with `api_key`, requests must carry it."""
    app = FastAPI(title="dojo.infer", docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status)

    @app.exception_handler(HTTPException)
    async def _http_error(request, e: HTTPException):  # unknown route, wrong method
        return JSONResponse(
            ApiError(e.status_code, str(e.detail)).body(), status_code=e.status_code
        )

    @app.exception_handler(Exception)
    async def _crash(request, e: Exception):  # answered, logged by uvicorn, and we keep serving
        error = ApiError(500, f"internal error: {type(e).__name__}: {e}", code="internal_error")
        return JSONResponse(error.body(), status_code=500)

    def check_key(request: Request) -> None:
        if api_key is not None and request.headers.get("authorization") != f"Bearer {api_key}":
            raise ApiError(
                401, "missing or wrong API key (Authorization: Bearer ...)", code="invalid_api_key"
            )

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": server.model_name, "active": server.active}

    @app.get("/v1/models")
    async def models(request: Request):
        check_key(request)
        card = {
            "id": server.model_name,
            "object": "model",
            "created": server.created,
            "owned_by": "dojo",
        }
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        check_key(request)
        chat = server.parse(await _read_body(request, server.limits.max_body_bytes))
        stream = server.open_stream(chat)
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if not chat.stream:
            try:
                await run_in_threadpool(stream.read)
            finally:
                stream.cancel()  # the client went away while we waited: free the model
            return server.completion(chat, stream, ident)
        return StreamingResponse(
            _sse(server.chunks(chat, stream, ident), stream, request),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


async def _sse(chunks: Iterator[dict], stream: ReplyStream, request: Request):
    """Server-Sent Events from blocking `chunks`; cancels generation if the client leaves."""
    done = object()
    try:
        while True:
            chunk = await run_in_threadpool(next, chunks, done)
            if chunk is done:
                break
            if await request.is_disconnected():
                return
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
    except Exception as e:  # headers are sent already: report in-band, as OpenAI does
        yield f"data: {json.dumps(ApiError(500, f'generation failed: {e}').body())}\n\n"
    finally:
        stream.cancel()


def default_model_name(model: str | Path | None, adapter: str | Path | None) -> str:
    """A readable id: the adapter's run folder name (`runs/sft/model` -> `sft`), else the model's."""
    if adapter is not None:
        path = Path(adapter)
        return path.parent.name if path.name == "model" else path.name
    return Path(str(model)).name


def build_server(
    model=None,
    adapter=None,
    tokenizer=None,
    model_name: str | None = None,
    limits: ServerLimits | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> ChatServer:
    """A ChatServer from paths (`model`, `adapter`) or from a loaded model and its tokenizer."""
    if model is not None and not isinstance(model, (str, Path)):
        if tokenizer is None:
            raise ValueError("serving a loaded model needs its tokenizer too (tokenizer=...)")
        name = model_name or Path(getattr(model.config, "_name_or_path", "") or "model").name
        return ChatServer(model.eval(), tokenizer, name, limits)
    net, tok = load_for_inference(model, adapter, device=device, dtype=dtype)
    return ChatServer(net, tok, model_name or default_model_name(model, adapter), limits)


def free_port_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening-ready socket bound to `host:port` (port 0: a free one the OS picks)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


@contextlib.contextmanager
def running(
    model=None,
    adapter=None,
    *,
    tokenizer=None,
    model_name: str | None = None,
    limits: ServerLimits | None = None,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 60.0,
) -> Iterator[str]:
    """Serve in a background thread of this process; yields the base URL (`http://host:port/v1`).

    `model` is a folder / hub id (with an optional `adapter` folder) or a loaded model (then
    pass `tokenizer`). `model_name` is the id clients must send (default: the adapter's run
    folder or the model folder's name; `GET /v1/models` lists it). The server stops on exit.
    """
    import uvicorn

    server = build_server(model, adapter, tokenizer, model_name, limits)
    app = create_app(server, api_key=api_key)
    sock = free_port_socket(host, port)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not web.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the server did not start on {host}:{sock.getsockname()[1]}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}/v1"
    finally:
        web.should_exit = True
        thread.join(timeout=10)
        sock.close()


def serve(
    model=None,
    adapter=None,
    host: str = "127.0.0.1",
    port: int = 8000,
    model_name: str | None = None,
    limits: ServerLimits | None = None,
    api_key: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
) -> None:
    """Serve in the foreground until Ctrl+C (what `python -m dojo.infer serve` runs)."""
    import uvicorn

    server = build_server(model, adapter, None, model_name, limits, device, dtype)
    print(f"dojo.infer: serving {server.model_name!r} on http://{host}:{port}/v1", flush=True)
    uvicorn.run(create_app(server, api_key=api_key), host=host, port=port, log_level="info")


__all__ = [
    "ApiError",
    "ChatServer",
    "ServerLimits",
    "build_server",
    "create_app",
    "running",
    "serve",
]
