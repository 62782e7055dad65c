"""The mock's answers that are not a stream: JSON errors, and the faults that replace the response."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from loadtest.mock import connection
from loadtest.mock.faults import HTTP_FAULTS
from loadtest.mock.state import MockState
from loadtest.mock.validation import BadRequest

UNAUTHORIZED: dict[str, Any] = {
    "error": {
        "message": "Unauthorized - Invalid Bearer Token",
        "type": "invalid_request_error",
        "code": "unauthorized",
    }
}
FAULT_ERRORS: dict[int, dict[str, Any]] = {
    400: {"message": "Bad request", "type": "invalid_request_error", "code": "bad_request"},
    401: UNAUTHORIZED["error"],
    429: {
        "message": "Rate limit exceeded, retry later",
        "type": "rate_limit_error",
        "code": "rate_limit_exceeded",
    },
    500: {"message": "Internal server error", "type": "server_error", "code": "internal_error"},
    503: {
        "message": "Service unavailable, retry later",
        "type": "server_error",
        "code": "service_unavailable",
    },
}
_MAINTENANCE_PAGE = "<!doctype html><html><body><h1>Gateway maintenance</h1></body></html>"


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def injected(error: dict[str, Any]) -> dict[str, Any]:
    """An `{"error": ...}` body that says the mock injected it on purpose."""
    return {"error": {**error, "message": f"{error['message']} (fault injected by the mock)"}}


class Answers:
    """Checks the key, and answers without a stream; every status answered is counted in the state."""

    def __init__(self, state: MockState, api_key: str) -> None:
        self.state = state
        self._bearer = f"Bearer {api_key}".encode()

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return hmac.compare_digest(header.encode("utf-8", "surrogateescape"), self._bearer)

    def error(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
        self.state.status[status] += 1
        return json_response(body, status, headers)

    def unauthorized(self) -> web.Response:
        return self.error(401, UNAUTHORIZED)

    def bad_request(self, exc: BadRequest) -> web.Response:
        error = {"message": exc.message, "type": "invalid_request_error", "param": exc.param}
        return self.error(400, {"error": {**error, "code": "bad_request"}})

    def fault(self, request: web.Request, fault: str) -> web.Response:
        """The answer of a fault that replaces the whole stream (`faults.NO_STREAM_FAULTS`)."""
        if fault in HTTP_FAULTS:
            status = HTTP_FAULTS[fault]
            headers = {"Retry-After": "1"} if status == 429 else None
            return self.error(status, injected(FAULT_ERRORS[status]), headers)
        if fault == "reset":
            connection.reset(request)
            return web.Response()  # never sent: aiohttp finds the transport closed
        self.state.status[200] += 1
        if fault == "content_type":
            return web.Response(text=_MAINTENANCE_PAGE, content_type="text/html")
        return json_response(injected(FAULT_ERRORS[500]))  # error_body
