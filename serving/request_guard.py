"""What is checked before a route reads a request body: its size, and who sends it.

An ASGI middleware (not Starlette's BaseHTTPMiddleware, which cannot watch a body stream):
- a body over `max_bytes` is refused with 413, by its Content-Length when it declares one and otherwise while it
  streams (a `Transfer-Encoding: chunked` body is counted chunk by chunk and never read past the limit);
- a request with a body to a route that needs a login is authenticated first, so an anonymous caller gets 401
  before anything parses what it sent. The principal found is handed to the route's auth dependency
  (`scope["state"]["principal"]`), so a request is authenticated once.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citywatch.cases.accounts import AccountStore, Principal
from citywatch.serving.auth import authenticate_header

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


def error_response(error: HTTPException) -> JSONResponse:
    """The API's one error body (`schemas.ErrorBody`) for an HTTP error."""
    return JSONResponse({"detail": str(error.detail), "errors": []}, error.status_code, headers=error.headers)


class RequestGuard:
    def __init__(
        self, app: ASGIApp, *, max_bytes: int, accounts: AccountStore, needs_login: Callable[[Scope], bool]
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.accounts = accounts
        self.needs_login = needs_login

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await error_response(BodyTooLarge(self.max_bytes))(scope, receive, send)
            return
        if scope["method"] in BODY_METHODS and self.needs_login(scope):
            try:
                principal: Principal = await run_in_threadpool(
                    authenticate_header, self.accounts, headers.get("authorization")
                )
            except HTTPException as error:
                await error_response(error)(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
        await self._limited(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as error:  # raised where no handler answered it (outside a route)
            if started:
                raise
            await error_response(error)(scope, receive, send)
