"""The mock's request handlers: the two chat routes, and the `/_mock/...` routes that report its state.

A chat request is checked (key, then body) before a fault is drawn, so a bad request is still answered
401 or 400; a fault that replaces the response is answered by `answers.Answers.fault`, the others are
streamed by `stream.Streamer`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from loadtest import nlx
from loadtest.mock.answers import Answers, json_response
from loadtest.mock.config import MockConfig
from loadtest.mock.faults import NO_STREAM_FAULTS
from loadtest.mock.state import MockState, conversation_json
from loadtest.mock.stream import Streamer
from loadtest.mock.validation import BadRequest, check_channel_key, parse_nlx_body, parse_openai_body

_Parsed = TypeVar("_Parsed")


class ChatRoutes:
    """POST {prefix}/{deployment}/{channel}/chat/completions and the generic OpenAI route."""

    def __init__(self, config: MockConfig, state: MockState) -> None:
        self.config = config
        self.state = state
        self.answers = Answers(state, config.api_key)
        self.streamer = Streamer(config, state)
        # A generator of its own, so faults leave the timings of a seeded run unchanged.
        self.fault_rng = random.Random(f"{config.seed}:faults")

    async def _admit(
        self, request: web.Request, parse: Callable[[web.Request, bytes], _Parsed]
    ) -> tuple[int, _Parsed, str | None] | web.Response:
        """When the request came, what `parse` read from it, and the fault drawn for it; or the answer
        that ends it here: 401, 400, or a fault that replaces the stream."""
        started_ns = time.perf_counter_ns()
        self.state.requests += 1
        self.state.saw_connection(request.transport)
        if not self.answers.authorized(request):
            return self.answers.unauthorized()
        try:
            parsed = parse(request, await request.read())
        except BadRequest as exc:
            return self.answers.bad_request(exc)
        fault = self.config.faults.draw(self.fault_rng)
        if fault is not None:
            self.state.faults[fault] += 1
            if fault in NO_STREAM_FAULTS:
                return self.answers.fault(request, fault)
        return started_ns, parsed, fault

    async def nlx(self, request: web.Request) -> web.StreamResponse:
        """The contract's endpoint: conversations are kept, and the history checked against them."""
        admitted = await self._admit(request, _parse_nlx)
        if isinstance(admitted, web.Response):
            return admitted
        started_ns, (conversation_id, messages), fault = admitted
        if conversation_id is None:
            conversation_id = nlx.new_conversation_id()
        turns = self.state.begin_turn(conversation_id, messages)
        deployment_key = request.match_info["deployment"]
        return await self.streamer.stream(
            request, started_ns, conversation_id, turns, messages, deployment_key, fault
        )

    async def openai(self, request: web.Request) -> web.StreamResponse:
        """The generic OpenAI route: any model name, no server-side state, so each request is new; the
        usage chunk when the request asks for it (the NLX route never sends one, as NLX does not)."""
        admitted = await self._admit(request, _parse_openai)
        if isinstance(admitted, web.Response):
            return admitted
        started_ns, (model, messages, include_usage), fault = admitted
        turns = self.state.begin_stateless_turn(messages)
        return await self.streamer.stream(
            request,
            started_ns,
            nlx.new_conversation_id(),
            turns,
            messages,
            model,
            fault,
            include_usage=include_usage,
        )


def _parse_nlx(request: web.Request, raw: bytes) -> tuple[str | None, list[dict[str, Any]]]:
    check_channel_key(request.match_info["channel"])
    return parse_nlx_body(raw)


def _parse_openai(request: web.Request, raw: bytes) -> tuple[str, list[dict[str, Any]], bool]:
    return parse_openai_body(raw)


class StateRoutes:
    """GET /_mock/stats, POST /_mock/reset, GET /_mock/conversations[/{id}]."""

    def __init__(self, state: MockState) -> None:
        self.state = state

    async def stats(self, request: web.Request) -> web.Response:
        return json_response(self.state.snapshot())

    async def reset(self, request: web.Request) -> web.Response:
        self.state.reset()
        return json_response({"reset": True})

    async def conversation_ids(self, request: web.Request) -> web.Response:
        return json_response({"ids": list(self.state.conversations)})

    async def conversation(self, request: web.Request) -> web.Response:
        conversation_id = request.match_info["conversation_id"]
        turns = self.state.conversations.get(conversation_id)
        if turns is None:
            return json_response({"error": {"message": "no such conversation", "code": "not_found"}}, 404)
        return json_response(conversation_json(conversation_id, turns))
