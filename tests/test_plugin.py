"""End to end: a real `locust --headless` against the real mock server, checked against what it served."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from loadtest.settings import GC_CHECK_OBJECTS
from tests.conftest import (
    FAST,
    KEYED,
    LOCUST,
    LOCUSTFILE,
    NLX,
    TEST_KEY,
    LocustRun,
    Mock,
    free_port,
    locust_env,
)

CHANNEL = ("--nlx-deployment", "dep1", "--nlx-channel", "web-en-US")


def test_summary_counts_match_what_the_mock_served(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server(*FAST)
    run = run_locust(f"--host {mock.url} {NLX} -u 8 -r 8 -t 4s --think-time 0 --stop-timeout 30", env=KEYED)
    assert run.returncode == 0, run.output[-3000:]
    summary = run.summary()
    served = mock.stats()
    counts = summary["counts"]
    assert summary["schema"] == "loadtest.summary/1"
    assert counts["turns"] > 20
    assert counts["turns"] == counts["turns_ok"] == served["turns"] == served["turns_completed"]
    assert counts["turns_failed"] == counts["turns_cut"] == 0
    assert counts["chunks"] == served["chunks"]
    assert counts["chars"] == served["chars"]
    assert counts["conversations_started"] == counts["conversations_completed"] == served["conversations"]
    for name in ("ttft_ms", "turn_ms", "itl_ms"):
        stats = summary["metrics"][name]
        assert set(stats) >= {"count", "min", "mean", "p50", "p90", "p95", "p99", "p999", "max", "hdr"}
        assert stats["min"] <= stats["p50"] <= stats["p99"] <= stats["max"]
    assert summary["metrics"]["ttft_ms"]["count"] == counts["turns"]
    assert summary["metrics"]["itl_ms"]["count"] == counts["chunks"] - counts["turns"]
    assert summary["metrics"]["ttft_ms"]["min"] >= 20.0
    assert summary["run"]["host"] == mock.url and summary["run"]["users"] == 8
    assert summary["errors"] == []
    # Full history went back to the server exactly as it was streamed, U+2028 and all.
    assert served["history_mismatches"] == 0
    run_dir = (run.report_dir / "latest").resolve()
    assert (run_dir / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert TEST_KEY not in (run_dir / "summary.json").read_text() + run.output


def test_history_carries_the_streamed_replies(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], tmp_path: Path
) -> None:
    mock = mock_server(*FAST)
    conversations = tmp_path / "c.jsonl"
    conversations.write_text('{"name": "three", "system": "sys", "turns": ["one", "two", "three"]}\n')
    run = run_locust(
        f"--host {mock.url} {NLX} -u 2 -r 2 -t 2s --think-time 0 --stop-timeout 30 --conversations",
        str(conversations),
        env=KEYED,
    )
    assert run.returncode == 0, run.output[-3000:]
    served = mock.stats()
    assert served["history_mismatches"] == 0
    ids = mock_conversation_ids(mock)
    conv = mock.conversation(ids[0])
    turns = conv["turns"]
    assert len(turns) == 3
    assert [m["role"] for m in turns[2]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert turns[2]["messages"][2]["content"] == turns[0]["reply"]
    assert turns[2]["messages"][4]["content"] == turns[1]["reply"]


def test_history_last_sends_only_the_new_user_message(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], tmp_path: Path
) -> None:
    mock = mock_server(*FAST)
    conversations = tmp_path / "c.yaml"
    conversations.write_text("scenarios:\n  - name: two\n    turns: [one, two]\n")
    run = run_locust(
        f"--host {mock.url} {NLX} -u 1 -r 1 -t 1s --think-time 0 --stop-timeout 30 --history last",
        "--conversations",
        str(conversations),
        env=KEYED,
    )
    assert run.returncode == 0, run.output[-3000:]
    conv = mock.conversation(mock_conversation_ids(mock)[0])
    assert [t["messages"] for t in conv["turns"]] == [
        [{"role": "user", "content": "one"}],
        [{"role": "user", "content": "two"}],
    ]


def mock_conversation_ids(mock: Mock) -> list[str]:
    ids: list[str] = httpx.get(mock.url + "/_mock/conversations", timeout=10).json()["ids"]
    assert ids, "the mock lists no conversations"
    return ids


def test_wrong_key_gives_http_401_failed_turns(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server(*FAST)
    run = run_locust(
        f"--host {mock.url} {NLX} -u 2 -r 2 -t 2s --think-time 0.05",
        env=locust_env(NLX_API_KEY="wrong-key-4242"),
    )
    assert run.returncode == 1  # Locust's exit code when requests failed
    summary = run.summary()
    counts = summary["counts"]
    assert counts["turns_ok"] == 0 and counts["turns_failed"] > 0
    assert counts["turns"] == counts["turns_failed"] + counts["turns_cut"]
    [error] = [e for e in summary["errors"] if e["kind"] != "cut"]
    assert error["kind"] == "http_401" and error["count"] == counts["turns_failed"]
    assert "Unauthorized" in error["example"]
    assert mock.stats()["status"]["401"] == counts["turns_failed"]
    assert "wrong-key-4242" not in run.output + orjson.dumps(summary).decode()


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ("--nlx-deployment", "d", "--nlx-channel", "web"),
            {"NLX_API_KEY": TEST_KEY},
            "has no language suffix: use --nlx-channel web-en-US",
        ),
        (("--nlx-deployment", "d"), {"NLX_API_KEY": TEST_KEY}, "missing NLX channel key: pass --nlx-channel"),
        (("--nlx-deployment", "d", "--nlx-channel", "web-en-US"), {}, "NLX_API_KEY is not set"),
        (
            ("--nlx-deployment", "d", "--nlx-channel", "web-en-US", "--think-time", "soon"),
            {"NLX_API_KEY": TEST_KEY},
            "--think-time 'soon'",
        ),
    ],
)
def test_bad_configuration_is_one_line_at_start(
    run_locust: Callable[..., LocustRun], args: tuple[str, ...], env: dict[str, str], expected: str
) -> None:
    run = run_locust("--host https://apps.nlx.ai/v1 -t 5s", *args, env=locust_env(**env), timeout=60)
    assert run.returncode == 2
    error_lines = [line for line in run.stderr.splitlines() if line.startswith("loadtest: error:")]
    assert len(error_lines) == 1 and expected in error_lines[0], run.stderr[-2000:]
    assert "Traceback" not in run.output
    assert not (run.report_dir / "latest").exists()


def test_without_host_the_built_in_mock_runs_and_stops(run_locust: Callable[..., LocustRun]) -> None:
    run = run_locust("-u 3 -r 3 -t 3s --think-time 0 --mock-options", " ".join(FAST))
    assert run.returncode == 0, run.output[-3000:]
    summary = run.summary()
    assert summary["run"]["mock"] is True and summary["run"]["host"].startswith("http://127.0.0.1:")
    assert summary["counts"]["turns_ok"] > 0
    assert summary["run"]["deployment"] == "demo" and summary["run"]["channel"] == "web-en-US"
    with pytest.raises(httpx.ConnectError):  # the mock went away with locust
        httpx.get(summary["run"]["host"] + "/_mock/stats", timeout=5)


def test_host_with_a_path_prefix(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server(*FAST, "--prefix", "/v1")
    assert mock.url.endswith("/v1")
    run = run_locust(f"--host {mock.url} {NLX} -u 1 -r 1 -t 1s --think-time 0", env=KEYED)
    assert run.returncode == 0, run.output[-3000:]
    assert run.summary()["counts"]["turns_ok"] > 0
    assert mock.stats()["status"]["200"] > 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_still_writes_the_summary(
    mock_server: Callable[..., Mock], tmp_path: Path, signum: signal.Signals
) -> None:
    mock = mock_server(*FAST)
    report_dir = tmp_path / "reports"
    proc = subprocess.Popen(
        [
            LOCUST,
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--only-summary",
            "--host",
            mock.url,
            *CHANNEL,
            "-u",
            "4",
            "-r",
            "4",
            "--think-time",
            "0",
            "--report-dir",
            str(report_dir),
        ],
        env=locust_env(NLX_API_KEY=TEST_KEY),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while mock.stats()["turns_completed"] < 10:  # wait on the server's own count, not on the clock
            assert time.monotonic() < deadline and proc.poll() is None, "locust never got going"
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    summary = orjson.loads((report_dir / "latest" / "summary.json").read_bytes())
    counts = summary["counts"]
    assert counts["turns_ok"] >= 10
    assert counts["turns"] == counts["turns_ok"] + counts["turns_failed"] + counts["turns_cut"]
    assert summary["run"]["ended"] >= summary["run"]["started"]
    assert "Traceback" not in stderr


def test_loadtest_options_lists_our_options_with_their_env_vars() -> None:
    loadtest = str(Path(LOCUST).with_name("loadtest"))
    out = subprocess.run(
        [loadtest, "options"], capture_output=True, text=True, timeout=60, env=locust_env()
    ).stdout
    for option in (
        "--nlx-deployment",
        "--nlx-channel",
        "--think-time",
        "--history",
        "--conversations",
        "--report-dir",
        "--mock-options",
    ):
        assert option in out
    for env_var in ("NLX_DEPLOYMENT", "NLX_CHANNEL", "LOADTEST_THINK_TIME", "LOADTEST_REPORT_DIR"):
        assert env_var in out


def test_ttft_matches_the_mock_truth_within_2ms_at_p50_with_50_users(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server("--ttft", "const:100ms", "--itl", "const:20ms", "--chunks", "const:5")
    run = run_locust(
        f"--host {mock.url} {NLX} -u 50 -r 50 -t 8s --think-time 0.2-0.6 --stop-timeout 30", env=KEYED
    )
    assert run.returncode == 0, run.output[-3000:]
    summary = run.summary()
    served = mock.stats()
    assert summary["metrics"]["ttft_ms"]["count"] == served["turns"] >= 200, (
        summary["counts"],
        summary["errors"],
        served["turns"],
        served["turns_completed"],
    )
    measured, truth = summary["metrics"]["ttft_ms"]["p50"], served["ttft_ms"]["p50"]
    assert abs(measured - truth) <= 2.0, (measured, truth)
    assert abs(truth - 100.0) <= 2.0


def test_turns_cut_by_the_end_of_the_run_are_counted_with_what_they_received(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun]
) -> None:
    mock = mock_server("--ttft", "const:50ms", "--itl", "const:200ms", "--chunks", "const:40")
    run = run_locust(f"--host {mock.url} {NLX} -u 4 -r 4 -t 2s --think-time 0", env=KEYED)
    summary = run.summary()
    counts = summary["counts"]
    assert counts["turns_cut"] == 4 and counts["turns_ok"] == 0
    assert counts["turns"] == counts["turns_ok"] + counts["turns_failed"] + counts["turns_cut"]
    assert 0 < counts["chunks"] <= mock.stats()["chunks"]
    [cut] = summary["errors"]
    assert cut["kind"] == "cut" and cut["count"] == 4
    assert summary["metrics"]["ttft_ms"]["count"] == 0  # latency figures are of completed turns only


def test_a_400_from_the_server_is_a_failed_turn_with_its_message(mock_server: Callable[..., Mock]) -> None:
    from loadtest.client import make_client, stream_turn
    from loadtest.nlx import completions_url, request_body

    mock = mock_server(*FAST)
    with make_client() as client:
        url = completions_url(mock.url, "dep1", "web")  # no language suffix: the server says 400
        result = stream_turn(
            client, url, request_body("c1", [{"role": "user", "content": "hi"}]), api_key=TEST_KEY
        )
    assert not result.ok and result.kind == "http_400" and result.status == 400
    assert "language" in result.detail


def test_a_run_started_and_stopped_in_the_web_ui_writes_its_summary(
    mock_server: Callable[..., Mock], tmp_path: Path
) -> None:
    mock = mock_server(*FAST)
    report_dir = tmp_path / "reports"
    port = free_port()
    web = f"http://127.0.0.1:{port}"
    cmd = [LOCUST, "-f", str(LOCUSTFILE), "--web-host", "127.0.0.1", "--web-port", str(port)]
    cmd += ["--host", mock.url, *CHANNEL, "--think-time", "0", "--report-dir", str(report_dir)]
    proc = subprocess.Popen(
        cmd, env=KEYED, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60

        def until(condition: Callable[[], bool]) -> None:
            while not condition():
                assert time.monotonic() < deadline and proc.poll() is None, "locust web UI did not get there"

        def web_ui_up() -> bool:
            try:
                return httpx.get(web + "/", timeout=5).status_code == 200
            except httpx.TransportError:
                return False

        until(web_ui_up)
        answer = httpx.post(
            web + "/swarm", data={"user_count": 3, "spawn_rate": 3, "host": mock.url}, timeout=10
        )
        assert answer.json()["success"] is True
        until(lambda: mock.stats()["turns_completed"] >= 10)
        assert httpx.post(web + "/stop", timeout=30).json()["success"] is True
        until(lambda: (report_dir / "latest" / "summary.json").exists())
        summary = orjson.loads((report_dir / "latest" / "summary.json").read_bytes())
        assert summary["counts"]["turns_ok"] >= 10
        assert summary["run"]["users"] == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        (lambda tmp: f"--host http://127.0.0.1:{closed_port()}", "cannot connect to 127.0.0.1:"),
        (lambda tmp: "--report-dir /proc/no-such-dir/reports", "--report-dir '/proc/no-such-dir/reports'"),
        (lambda tmp: f"--conversations {bad_dataset(tmp)}", "bad.jsonl:2: "),
        (lambda tmp: "--threshold ttft.p95<fast", "--threshold 'ttft.p95<fast'"),
    ],
    ids=["unreachable host", "unwritable report dir", "bad dataset line", "bad threshold"],
)
def test_bad_input_is_one_line_naming_the_fix_and_exit_2(
    run_locust: Callable[..., LocustRun], tmp_path: Path, make_args: Callable[[Path], str], expected: str
) -> None:
    run = run_locust(f"{NLX} -t 5s {make_args(tmp_path)}", env=KEYED, timeout=60)
    assert run.returncode == 2, run.output[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("loadtest: error:")]
    assert len(errors) == 1 and expected in errors[0], run.stderr[-2000:]
    assert "Traceback" not in run.output


def bad_dataset(tmp: Path) -> Path:
    path = tmp / "bad.jsonl"
    path.write_text('{"name": "ok", "turns": ["hi"]}\n{"name": "broken", "turns": "hi"}\n', encoding="utf-8")
    return path


GC_HOOK = """
import gc
from pathlib import Path

from locust import events

OUT = Path({out!r})
made = []


@events.request.add_listener
def _seen(**kwargs):
    with OUT.open("a") as f:
        f.write("on\\n" if gc.isenabled() else "off\\n")
    if made or {count} == 0:
        return
    # A million-odd objects, either garbage in reference cycles or live state of the run.
    for _ in range({count}):
        a = []
        a.append(a) if {cycles} else made.append(a)
    made.append(None)
"""


def gc_hook(tmp_path: Path, *, count: int = 0, cycles: bool = True) -> tuple[str, Path]:
    out = tmp_path / "gc.txt"
    hook = tmp_path / "gc_hook.py"
    hook.write_text(GC_HOOK.format(out=str(out), count=count, cycles=cycles), encoding="utf-8")
    return f"{LOCUSTFILE},{hook}", out


@pytest.mark.parametrize("mode", ["auto", "off", "on"])
def test_the_garbage_collector_rests_during_the_run_unless_gc_on(
    mode: str, mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], tmp_path: Path
) -> None:
    files, out = gc_hook(tmp_path)
    mock = mock_server(*FAST)
    flag = "" if mode == "auto" else f"--gc {mode}"
    run = run_locust(f"--host {mock.url} {NLX} -u 2 -r 2 -t 2s --think-time 0 {flag}", "-f", files, env=KEYED)
    assert run.returncode == 0, run.output[-3000:]
    assert run.summary()["run"]["gc"] == mode
    seen = out.read_text().split()
    assert len(seen) > 5 and set(seen) == {"on" if mode == "on" else "off"}
    assert "reference cycles" not in run.output


def test_cycles_built_up_while_the_collector_rested_are_collected_and_reported(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], tmp_path: Path
) -> None:
    files, _ = gc_hook(tmp_path, count=20_000)
    mock = mock_server(*FAST)
    run = run_locust(
        f"--host {mock.url} {NLX} -u 2 -r 2 -t 2s --think-time 0 --gc off", "-f", files, env=KEYED
    )
    assert run.returncode == 0, run.output[-3000:]
    assert "objects in reference cycles built up" in run.output and "--gc on" in run.output


def test_gc_auto_turns_the_collector_back_on_when_cycles_pile_up(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], tmp_path: Path
) -> None:
    files, out = gc_hook(tmp_path, count=GC_CHECK_OBJECTS + 100_000)
    mock = mock_server(*FAST)
    run = run_locust(f"--host {mock.url} {NLX} -u 2 -r 2 -t 4s --think-time 0", "-f", files, env=KEYED)
    assert run.returncode == 0, run.output[-3000:]
    assert "reference cycles piled up while the garbage collector rested (--gc auto)" in run.output
    seen = out.read_text().split()
    # Resting first, then on for the rest of the run once the cycles were found.
    assert seen[0] == "off" and seen[-1] == "on"
    assert seen.index("on") > 0 and set(seen[seen.index("on") :]) == {"on"}


def test_gc_auto_keeps_resting_when_what_piled_up_is_live(
    mock_server: Callable[..., Mock], run_locust: Callable[..., LocustRun], tmp_path: Path
) -> None:
    files, out = gc_hook(tmp_path, count=GC_CHECK_OBJECTS + 100_000, cycles=False)
    mock = mock_server(*FAST)
    run = run_locust(f"--host {mock.url} {NLX} -u 2 -r 2 -t 4s --think-time 0", "-f", files, env=KEYED)
    assert run.returncode == 0, run.output[-3000:]
    assert "reference cycles" not in run.output
    assert set(out.read_text().split()) == {"off"}
