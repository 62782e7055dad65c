"""The mock's usage chunk, reasoning chunks and TLS (issue 15): in a thread of this process
(tests/mockthread.py), and as a child process where the launcher's reading of its URL is the point."""

from __future__ import annotations

import socket
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
from cryptography import x509

from loadtest.mock.command import main as mock_main
from loadtest.mock.contract import ERROR_PREFIX
from loadtest.mock.launch import MockAddress, start_mock
from loadtest.mock.tls import server_context, subject_names
from loadtest.mock.usage import count_usage
from tests.conftest import locust_env
from tests.mockthread import ThreadedMock, mock_in_thread
from tests.test_mock import AUTH, CHANNEL_PATH, KEY, QUICK, StreamedTurn, body_for, turn, user

OPENAI_PATH = "/v1/chat/completions"
MESSAGES = [{"role": "system", "content": "You answer  briefly."}, user("where is\tmy order?")]
PROMPT_WORDS = 3 + 4
ASK_USAGE = {"stream_options": {"include_usage": True}}


def openai_body(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": MESSAGES, "stream": True, **extra}


def deltas(result: StreamedTurn, key: str) -> list[str]:
    """The `key` of every chunk's delta that has one, after the role chunk (the usage chunk has none)."""
    choices = [c["choices"][0] for c in result.chunks[1:] if c["choices"]]
    return [choice["delta"][key] for choice in choices if key in choice["delta"]]


def answer(result: StreamedTurn) -> str:
    return "".join(deltas(result, "content"))


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def mock() -> Iterator[ThreadedMock]:
    with mock_in_thread("--chunks", "uniform:3:6", *QUICK, api_key=KEY) as m:
        yield m


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10, verify=False) as c:
        yield c


# --- the usage chunk ---------------------------------------------------------------------------


def test_the_usage_chunk_comes_after_the_finish_and_counts_the_words(
    mock: ThreadedMock, client: httpx.Client
) -> None:
    mock.reset()
    result = turn(client, mock.base, openai_body(**ASK_USAGE), path=OPENAI_PATH)
    assert result.status == 200 and result.events[-1] == b"[DONE]"
    *streamed, finish, usage_chunk = result.chunks
    assert finish["choices"][0]["finish_reason"] == "stop"
    reply = answer(result)
    completion = words(reply)
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {
        "prompt_tokens": PROMPT_WORDS,
        "completion_tokens": completion,
        "total_tokens": PROMPT_WORDS + completion,
    }
    assert {key: usage_chunk[key] for key in ("id", "object", "model")} == {
        key: finish[key] for key in ("id", "object", "model")
    }
    # As OpenAI: once usage is asked for, every other chunk says "usage": null.
    assert all("usage" in chunk and chunk["usage"] is None for chunk in [*streamed, finish])
    assert mock.stats()["usage"] == {
        "chunks": 1,
        "prompt_tokens": PROMPT_WORDS,
        "completion_tokens": completion,
        "reasoning_tokens": 0,
    }


@pytest.mark.parametrize(
    "extra",
    [{}, {"stream_options": {"include_usage": False}}, {"stream_options": {}}],
    ids=["no-stream-options", "include-usage-false", "empty-stream-options"],
)
def test_no_usage_unless_asked(mock: ThreadedMock, client: httpx.Client, extra: dict[str, Any]) -> None:
    result = turn(client, mock.base, openai_body(**extra), path=OPENAI_PATH)
    assert result.status == 200 and result.events[-1] == b"[DONE]"
    assert all("usage" not in chunk and chunk["choices"] for chunk in result.chunks)


def test_the_nlx_route_never_sends_usage(mock: ThreadedMock, client: httpx.Client) -> None:
    mock.reset()
    result = turn(client, mock.url, {**body_for("nlx"), **ASK_USAGE})
    assert result.status == 200 and answer(result)
    assert all("usage" not in chunk and chunk["choices"] for chunk in result.chunks)
    assert mock.stats()["usage"]["chunks"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [(True, "stream_options must be an object"), ({"include_usage": "yes"}, "must be a boolean")],
    ids=["not-an-object", "include-usage-not-bool"],
)
def test_bad_stream_options_are_400(
    mock: ThreadedMock, client: httpx.Client, options: Any, message: str
) -> None:
    result = turn(client, mock.base, openai_body(stream_options=options), path=OPENAI_PATH)
    assert result.status == 400
    error = orjson.loads(result.body)["error"]
    assert message in error["message"] and error["param"] == "stream_options"


def test_a_stream_cut_by_a_fault_sends_no_usage(client: httpx.Client) -> None:
    with mock_in_thread("--fault", "error_event=100%", "--chunks", "const:4", *QUICK, api_key=KEY) as m:
        result = turn(client, m.base, openai_body(**ASK_USAGE), path=OPENAI_PATH)
        served = m.stats()
    assert "error" in orjson.loads(result.events[-1])
    assert all(chunk.get("usage") is None for chunk in result.chunks)
    assert served["usage"]["chunks"] == 0


def test_count_usage_counts_whitespace_separated_words() -> None:
    messages = [{"content": "one  two\nthree"}, {"content": " "}, {"content": "four\u2028five"}]
    assert count_usage(messages, "a b c", None).json() == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
    }
    assert count_usage(messages, "a b c", "think about it").json() == {
        "prompt_tokens": 5,
        "completion_tokens": 6,
        "total_tokens": 11,
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


# --- reasoning chunks --------------------------------------------------------------------------


def test_reasoning_comes_first_and_leaves_the_answer_unchanged(client: httpx.Client) -> None:
    options = ("--seed", "11", "--chunks", "uniform:3:6", *QUICK)
    with mock_in_thread(*options, api_key=KEY) as plain:
        without = turn(client, plain.url, body_for("nlx:same-turn"))
    with mock_in_thread(*options, "--reasoning", "const:4", api_key=KEY) as thinking:
        result = turn(client, thinking.url, body_for("nlx:same-turn"))
        served = thinking.stats()
        record = thinking.conversation("same-turn")
    kinds = [next(iter(chunk["choices"][0]["delta"])) for chunk in result.chunks[1:-1]]
    assert kinds == ["reasoning_content"] * 4 + ["content"] * len(deltas(without, "content")), kinds
    assert all(deltas(result, "reasoning_content"))
    assert answer(result) == answer(without) == record["turns"][0]["reply"]
    # Reasoning is counted apart: the answer's chunks and characters are what the client got as answer.
    reasoning = "".join(deltas(result, "reasoning_content"))
    assert (served["reasoning_chunks"], served["reasoning_chars"]) == (4, len(reasoning))
    assert (served["chunks"], served["chars"]) == (len(deltas(result, "content")), len(answer(result)))
    assert record["turns"][0]["delivered"] is True


def test_reasoning_tokens_are_completion_tokens_named_apart(client: httpx.Client) -> None:
    with mock_in_thread("--reasoning", "const:3", "--chunks", "const:2", *QUICK, api_key=KEY) as m:
        result = turn(client, m.base, openai_body(**ASK_USAGE), path=OPENAI_PATH)
        served = m.stats()["usage"]
    reasoning = words("".join(deltas(result, "reasoning_content")))
    completion = words(answer(result)) + reasoning
    assert len(deltas(result, "reasoning_content")) == 3 and len(deltas(result, "content")) == 2
    assert result.chunks[-1]["usage"] == {
        "prompt_tokens": PROMPT_WORDS,
        "completion_tokens": completion,
        "total_tokens": PROMPT_WORDS + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    assert served == {
        "chunks": 1,
        "prompt_tokens": PROMPT_WORDS,
        "completion_tokens": completion,
        "reasoning_tokens": reasoning,
    }


def test_the_reasoning_count_follows_its_distribution(client: httpx.Client) -> None:
    with mock_in_thread("--reasoning", "uniform:2:5", *QUICK, api_key=KEY) as m:
        counts = [
            len(deltas(turn(client, m.url, body_for(f"nlx:count-{i}")), "reasoning_content"))
            for i in range(12)
        ]
    assert all(2 <= count <= 5 for count in counts) and len(set(counts)) > 1, counts
    with mock_in_thread("--reasoning", "const:0", *QUICK, api_key=KEY) as none:
        result = turn(client, none.base, openai_body(**ASK_USAGE), path=OPENAI_PATH)
    assert deltas(result, "reasoning_content") == [] and answer(result)
    assert "completion_tokens_details" not in result.chunks[-1]["usage"]  # no reasoning was sent


def test_the_answer_starts_after_the_reasoning(client: httpx.Client) -> None:
    """The server's TTFT is its first answer chunk's: --ttft, then one --itl per reasoning chunk. A
    lower bound, which a loaded machine can only make later."""
    args = ("--ttft", "const:20ms", "--itl", "const:30ms", "--reasoning", "const:3", "--chunks", "const:2")
    with mock_in_thread(*args, api_key=KEY) as m:
        result = turn(client, m.url, body_for("nlx"))
        ttft = m.stats()["ttft_ms"]
    assert len(deltas(result, "reasoning_content")) == 3 and len(deltas(result, "content")) == 2
    assert ttft["count"] == 1 and ttft["max"] >= 20 + 3 * 30 - 1, ttft


def test_a_fault_mid_stream_comes_after_the_reasoning_and_two_answer_chunks(client: httpx.Client) -> None:
    args = ("--fault", "truncate=100%", "--reasoning", "const:2", "--chunks", "const:6", *QUICK)
    with mock_in_thread(*args, api_key=KEY) as m:
        received = b""
        with (
            pytest.raises(httpx.RemoteProtocolError),
            client.stream(
                "POST", m.url + CHANNEL_PATH, content=orjson.dumps(body_for("nlx:cut")), headers=AUTH
            ) as r,
        ):
            for data in r.iter_bytes():
                received += data
        served = m.stats()
        record = m.conversation("cut")
    *events, tail = received.split(b"\n\n")
    kinds = [next(iter(orjson.loads(e[6:])["choices"][0]["delta"])) for e in events[1:]]
    assert kinds == ["reasoning_content", "reasoning_content", "content", "content"]
    assert tail.startswith(b"data: {") and not tail.endswith(b"}")
    assert (served["reasoning_chunks"], served["chunks"]) == (2, 2)
    assert record["turns"][0]["delivered"] is False


def test_a_huge_event_after_reasoning_leaves_the_reply_undelivered(client: httpx.Client) -> None:
    args = ("--fault", "huge_event=100%", "--reasoning", "const:2", *QUICK)
    with mock_in_thread(*args, api_key=KEY) as m:
        result = turn(client, m.url, body_for("nlx:huge"))
        record = m.conversation("huge")
    assert len(deltas(result, "reasoning_content")) == 2
    assert len(answer(result)) == 2 * 1024 * 1024 and result.chunks[-1]["choices"][0]["finish_reason"] is None
    assert record["turns"][0]["delivered"] is False


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_mock() -> Iterator[ThreadedMock]:
    with mock_in_thread("--tls", "--chunks", "const:3", *QUICK, api_key=KEY) as m:
        yield m


def test_tls_streams_to_a_client_that_skips_verification(
    tls_mock: ThreadedMock, client: httpx.Client
) -> None:
    assert urlsplit(tls_mock.url).scheme == "https"
    result = turn(client, tls_mock.base, openai_body(**ASK_USAGE), path=OPENAI_PATH)
    assert result.status == 200 and result.events[-1] == b"[DONE]"
    assert len(deltas(result, "content")) == 3 and result.chunks[-1]["usage"]["completion_tokens"] > 0


def test_tls_is_refused_by_a_client_that_verifies(tls_mock: ThreadedMock) -> None:
    with (
        httpx.Client(timeout=10) as verifying,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        turn(verifying, tls_mock.url, body_for("nlx"))


def test_the_certificate_names_loopback_and_can_be_trusted_as_it_is(tls_mock: ThreadedMock) -> None:
    port = urlsplit(tls_mock.url).port
    assert port is not None
    pem = served_certificate("127.0.0.1", port)
    names = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert {str(name) for name in names.value.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert names.value.get_values_for_type(x509.DNSName) == ["localhost"]
    # A client that trusts exactly this certificate verifies it, by address and by name.
    with httpx.Client(timeout=10, verify=ssl.create_default_context(cadata=pem)) as pinned:
        for host in ("127.0.0.1", "localhost"):
            result = turn(pinned, f"https://{host}:{port}", body_for("nlx"))
            assert result.status == 200 and result.events[-1] == b"[DONE]"


def served_certificate(host: str, port: int) -> str:
    """The certificate the server at host:port presents, as PEM, not verified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=10) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return ssl.DER_cert_to_PEM_cert(der)


LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0.0.0.0", LOOPBACK_NAMES),
        ("::", LOOPBACK_NAMES),
        ("[::1]", LOOPBACK_NAMES),
        ("localhost", LOOPBACK_NAMES),
        ("10.1.2.3", [*LOOPBACK_NAMES, "10.1.2.3"]),
        ("mock.example", ["localhost", "mock.example", "127.0.0.1", "::1"]),
    ],
)
def test_the_certificate_adds_the_listening_host_unless_a_wildcard(host: str, expected: list[str]) -> None:
    assert [str(name.value) for name in subject_names(host)] == expected


def test_the_certificate_and_key_files_are_gone_once_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    context = server_context("127.0.0.1")
    assert isinstance(context, ssl.SSLContext) and list(tmp_path.iterdir()) == []


# --- idle_close: a new connection, and over TLS a new handshake, for every turn -------------------


def test_idle_close_closes_the_connection_after_the_response(client: httpx.Client) -> None:
    """The server closes (the client keeps its end open): reading to the end returns."""
    with mock_in_thread("--fault", "idle_close=100%", "--chunks", "const:2", *QUICK, api_key=KEY) as m:
        address = urlsplit(m.url)
        assert address.hostname is not None and address.port is not None
        body = orjson.dumps(body_for("nlx"))
        request = (
            f"POST {CHANNEL_PATH} HTTP/1.1\r\nHost: {address.netloc}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            sock.sendall(request)
            received = b""
            while piece := sock.recv(65536):  # a timeout here: the server kept the connection open
                received += piece
    assert received.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in received


@pytest.mark.parametrize(("faults", "connections"), [((), 1), (("--fault", "idle_close=100%"), 3)])
def test_over_tls_idle_close_makes_every_turn_a_new_connection(
    faults: tuple[str, ...], connections: int
) -> None:
    with (
        mock_in_thread("--tls", *faults, "--chunks", "const:2", *QUICK, api_key=KEY) as m,
        httpx.Client(timeout=10, verify=False) as one_client,
    ):
        results = [turn(one_client, m.url, body_for("nlx:tls-idle")) for _ in range(3)]
        served = m.stats()
    assert all(result.events[-1] == b"[DONE]" for result in results)
    assert served["connections"] == connections and served["turns_completed"] == 3
    assert served["history_mismatches"] == 0


# --- the launcher and the command line ----------------------------------------------------------


def test_the_launcher_reads_an_https_url_and_keeps_it_https_for_workers() -> None:
    # The key the mock takes from the environment: another test of the session may have set one.
    env = locust_env(NLX_API_KEY=KEY)
    process = start_mock(["--tls", *QUICK], env=env, address=MockAddress("127.0.0.1", "localhost"))
    try:
        url = urlsplit(process.url)
        assert (url.scheme, url.hostname) == ("https", "localhost")
        with httpx.Client(timeout=10, verify=False) as c:
            result = turn(c, process.url, body_for("nlx"), headers={"Authorization": f"Bearer {KEY}"})
    finally:
        process.stop()
    assert result.status == 200 and result.events[-1] == b"[DONE]"
    assert process.process.returncode == 0


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--reasoning", "lots"], "--reasoning: bad distribution 'lots': use const:V"),
        (["--reasoning", "3ms"], "--reasoning: bad distribution '3ms': use const:V"),
        (["--tls=yes"], "argument --tls: ignored explicit argument 'yes'"),
    ],
    ids=["reasoning-not-a-count", "reasoning-with-a-unit", "tls-takes-no-value"],
)
def test_bad_values_exit_2_with_one_line(
    args: list[str], line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mock_main(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    [said] = err.splitlines()
    assert said.startswith(ERROR_PREFIX + line), said


def test_help_says_what_the_new_options_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert mock_main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--reasoning DIST reasoning chunks before the answer" in text
    assert "--tls serve HTTPS, with a self-signed certificate" in text
    assert "idle_close=100% closes the connection after every response, so every turn opens a new one" in text
    assert 'stream_options: {"include_usage": true}' in text
