"""The container image and its deployments, checked offline: the Dockerfile with hadolint, the Kubernetes
manifests against Kubernetes' schemas, the compose file parsed, and the image's own command line, with
the compose file's environment, run as plain processes: a master and several workers on loopback whose
merged summary is exact."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import orjson
import pytest
import yaml

from loadtest.mock.contract import API_KEY_ENV, DEFAULT_API_KEY
from tests.conftest import (
    FAST,
    TEST_KEY,
    Finish,
    LocustRun,
    background,
    free_port,
    locust_env,
    start_background_mock,
    wait_locust,
)
from tests.harness import ROOT
from tests.test_distributed import assert_merged_exactly

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"
SAMPLE_CONVERSATIONS = ROOT / "locustfiles" / "conversations.yaml"
HADOLINT = Path(sys.executable).with_name("hadolint")
# The oldest Kubernetes the manifests are written for (batch/v1 Jobs, apps/v1, stable probes).
KUBERNETES_VERSION = "1.29.0"
# The master of issue 18's check: eight workers (each a process that imports Locust and loadtest, about
# 1.4 s of CPU). This is also the suite's one master/worker exactness run: no other copies it.
WORKERS = 8
USERS = "16"
# libyaml's loader when PyYAML has it: the pure-Python one takes a tenth of a second for these files.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# --- the Dockerfile -----------------------------------------------------------------------------------


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def exec_form(word: str) -> list[str]:
    """The JSON (exec) form of the final stage's ENTRYPOINT or CMD."""
    args = [rest for found, rest in final_stage() if found == word]
    assert len(args) == 1, f"one {word} in the final stage"
    form: list[str] = json.loads(args[0])
    return form


def test_the_dockerfile_passes_hadolint() -> None:
    assert HADOLINT.exists(), f"no {HADOLINT}: install the test extras (pip install -e '.[test]')"
    done = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_builds_wheels_first_and_runs_as_a_user_with_reports_on_a_volume() -> None:
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) == 2 and all(re.match(r"python:3\.\d+-slim\b", base) for base in froms)
    stage = final_stage()
    users = [rest for word, rest in stage if word == "USER"]
    assert users and users[-1].isdigit() and users[-1] != "0"  # numeric: runAsNonRoot can check it
    assert ("VOLUME", "/reports") in stage
    assert any(word == "ENV" and "LOADTEST_REPORT_DIR=/reports" in rest for word, rest in stage)
    assert any(word == "RUN" and "from=wheels" in rest and "--no-index" in rest for word, rest in stage)
    assert exec_form("CMD") == ["locust", "-f", "locustfiles/chat.py"]


def copied_sources() -> set[str]:
    """What the COPY instructions take from the build context."""
    sources: set[str] = set()
    for word, rest in instructions():
        if word == "COPY" and "--from" not in rest:
            sources.update(rest.split()[:-1])
    return sources


def test_the_entrypoint_is_the_script_in_deploy() -> None:
    entrypoint = exec_form("ENTRYPOINT")
    copies = [rest.split() for word, rest in final_stage() if word == "COPY"]
    assert ["deploy/entrypoint.sh", f"/usr/local/bin/{entrypoint[0]}"] in copies
    assert os.access(DEPLOY / "entrypoint.sh", os.X_OK)  # COPY keeps the mode


def test_the_dockerignore_lets_in_what_the_dockerfile_copies_and_nothing_else() -> None:
    lines = [
        line for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines() if line[:1] not in ("", "#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    sources = copied_sources()
    assert sources == allowed
    assert all((ROOT / source).exists() for source in sources)


# --- the Kubernetes manifests -------------------------------------------------------------------------


@functools.cache
def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every object of every manifest, by file (relative to deploy/kubernetes); read once, not to be
    changed."""
    found = {}
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        docs = [doc for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=LOADER) if doc]
        found[str(path.relative_to(KUBERNETES))] = docs
    assert found, f"no manifests in {KUBERNETES}"
    return found


def objects(kind: str | None = None) -> Iterator[dict[str, Any]]:
    for docs in manifests().values():
        yield from (doc for doc in docs if kind is None or doc["kind"] == kind)


def named(kind: str, name: str, folder: str = "") -> dict[str, Any]:
    for file, docs in manifests().items():
        for doc in docs:
            if doc["kind"] == kind and doc["metadata"]["name"] == name and file.startswith(folder):
                return doc
    raise AssertionError(f"no {kind} {name} in deploy/kubernetes/{folder}")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    return spec


def containers() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(object, container) for every container of every pod-making object."""
    for obj in objects():
        if obj["kind"] in ("Deployment", "Job", "Pod"):
            for container in pod_spec(obj)["containers"]:
                yield obj, container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_every_manifest_is_valid_against_the_kubernetes_schemas() -> None:
    for file, docs in manifests().items():
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"deploy/kubernetes/{file}: {doc['kind']} {doc['metadata']['name']}: {exc}")


def test_the_schema_check_rejects_a_wrong_field() -> None:
    worker = json.loads(json.dumps(named("Deployment", "loadtest-worker")))
    worker["spec"]["template"]["spec"]["containers"][0]["resource"] = {}  # a typo of "resources"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


def test_the_api_key_comes_from_the_secret_only() -> None:
    secret = named("Secret", "loadtest-nlx")
    assert set(secret["stringData"]) == {API_KEY_ENV}
    for config_map in objects("ConfigMap"):
        assert API_KEY_ENV not in json.dumps(config_map)
    users = []
    for obj, container in containers():
        assert not any(API_KEY_ENV in arg for arg in container.get("args", []) + container.get("command", []))
        source = env_of(container).get(API_KEY_ENV)
        if source is not None:
            assert source == {"secretKeyRef": {"name": "loadtest-nlx", "key": API_KEY_ENV}}, obj["metadata"]
            users.append(obj["metadata"]["name"])
    assert {"loadtest-master", "loadtest-worker", "loadtest-mock"} <= set(users)


def test_workers_find_the_master_and_the_master_finds_the_mock() -> None:
    service = named("Service", "loadtest-master")
    ports = {port["targetPort"]: port["port"] for port in service["spec"]["ports"]}
    assert ports == {"workers": 5557, "web-ui": 8089}
    mock_service = named("Service", "loadtest-mock")
    mock_port = mock_service["spec"]["ports"][0]["port"]
    for variant in ("web-ui/", "headless/"):
        kind = "Job" if variant == "headless/" else "Deployment"
        master = named(kind, "loadtest-master", variant)
        labels = master["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        container = pod_spec(master)["containers"][0]
        assert {port["name"] for port in container["ports"]} == set(ports)
        assert env_of(container)["LOCUST_HOST"] == f"http://{mock_service['metadata']['name']}:{mock_port}"
        worker = named(kind, "loadtest-worker", variant)
        assert env_of(pod_spec(worker)["containers"][0])["LOCUST_MASTER_NODE_HOST"] == "loadtest-master"
    mock = named("Deployment", "loadtest-mock")
    assert str(mock_port) in pod_spec(mock)["containers"][0]["args"]


def test_the_headless_run_waits_for_all_its_workers_and_writes_to_the_reports_volume() -> None:
    master = named("Job", "loadtest-master", "headless/")
    workers = named("Job", "loadtest-worker", "headless/")
    env = env_of(pod_spec(master)["containers"][0])
    assert (
        int(env["LOCUST_EXPECT_WORKERS"]) == workers["spec"]["parallelism"] == workers["spec"]["completions"]
    )
    assert env["LOCUST_HEADLESS"] == "true" and env["LOCUST_RUN_TIME"]
    claim = named("PersistentVolumeClaim", "loadtest-reports", "headless/")["metadata"]["name"]
    for pod in (master, named("Pod", "loadtest-report-reader")):
        spec = pod_spec(pod)
        claimed = {
            v["name"] for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim
        }
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert [mounts[name] for name in claimed] == ["/reports"], pod["metadata"]["name"]


def test_the_conversations_config_map_is_the_sample_and_mounted_where_the_master_reads_it() -> None:
    config_map = named("ConfigMap", "loadtest-conversations")
    assert config_map["data"]["conversations.yaml"] == SAMPLE_CONVERSATIONS.read_text(encoding="utf-8"), (
        "deploy/kubernetes/conversations.yaml must hold locustfiles/conversations.yaml: copy it in again"
    )
    for obj, container in containers():
        path = env_of(container).get("LOADTEST_CONVERSATIONS")
        if path is not None:
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert str(Path(path).parent) in mounts, obj["metadata"]["name"]
    for obj, container in containers():
        if obj["metadata"]["name"] == "loadtest-worker":
            assert "/conversations" in {m["mountPath"] for m in container["volumeMounts"]}


def test_every_container_asks_for_cpu_and_memory_and_runs_as_a_user() -> None:
    for obj, container in containers():
        requests = container["resources"]["requests"]
        assert {"cpu", "memory"} <= requests.keys(), obj["metadata"]["name"]
        assert "memory" in container["resources"]["limits"]
        assert pod_spec(obj)["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


# --- the compose file ---------------------------------------------------------------------------------

DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def environment(service: str) -> dict[str, str]:
    """A service's environment with `${NAME:-default}` set to its default, as compose does when the
    variable is not set."""
    env = compose()["services"][service]["environment"]
    return {name: DEFAULT.sub(lambda m: m.group(2), str(value)) for name, value in env.items()}


def test_compose_runs_the_mock_a_master_and_scalable_workers() -> None:
    services = compose()["services"]
    assert set(services) == {"mock", "master", "worker"}
    for service in services.values():
        assert service["build"]["context"] == ".." and service["image"] == "loadtest:latest"
    mock_command = services["mock"]["command"]
    mock_port = mock_command[mock_command.index("--port") + 1]
    master = environment("master")
    assert master["LOCUST_HOST"] == f"http://mock:{mock_port}"
    assert services["master"]["depends_on"]["mock"]["condition"] == "service_healthy"
    worker = environment("worker")
    assert worker["LOCUST_MASTER_NODE_HOST"] == "master" and worker["LOCUST_MODE_WORKER"] == "true"
    # One variable sets how many workers run and how many the master waits for.
    replicas = services["worker"]["deploy"]["replicas"]
    assert (
        replicas == compose()["services"]["master"]["environment"]["LOCUST_EXPECT_WORKERS"] == "${WORKERS:-2}"
    )
    assert "reports:/reports" in services["master"]["volumes"]


def test_compose_passes_the_key_as_a_secret_file() -> None:
    data = compose()
    for name, service in data["services"].items():
        assert API_KEY_ENV not in service["environment"], name
        assert service["environment"]["NLX_API_KEY_FILE"] == "/run/secrets/nlx_api_key"
        assert service["secrets"] == ["nlx_api_key"]
    default = DEFAULT.sub(lambda m: m.group(2), data["secrets"]["nlx_api_key"]["file"])
    assert (DEPLOY / default).read_text(encoding="utf-8").strip() == DEFAULT_API_KEY


# --- the image's command line, as plain processes: a master and its workers on loopback ---------------


def image_command(env: dict[str, str], folder: Path, name: str) -> subprocess.Popen[str]:
    """The image's ENTRYPOINT and CMD run from the project folder (the image's WORKDIR holds the same
    locustfiles/), its entrypoint the script in deploy/, `locust` the venv's."""
    entrypoint, *args = exec_form("ENTRYPOINT") + exec_form("CMD")
    assert entrypoint == "loadtest-entrypoint"
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    (folder / name).mkdir(parents=True, exist_ok=True)
    with (folder / name / "stdout").open("w") as out, (folder / name / "stderr").open("w") as err:
        return subprocess.Popen(
            [str(DEPLOY / "entrypoint.sh"), *args], env={**env, "PATH": path}, cwd=ROOT,
            stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip


@background
def image_run(folder: Path) -> Finish:
    """The compose master's and workers' environments, with loopback addresses and a short run."""
    mock = start_background_mock(*FAST)
    key_file = folder / "nlx_api_key"
    key_file.write_text(TEST_KEY + "\n", encoding="utf-8")
    port = str(free_port())
    reports = folder / "reports"
    here = {"NLX_API_KEY_FILE": str(key_file)}
    master_env = locust_env(**{**environment("master"), **here})
    master_env.update(
        LOCUST_HOST=mock.url, LOCUST_MASTER_BIND_HOST="127.0.0.1", LOCUST_MASTER_BIND_PORT=port,
        LOCUST_EXPECT_WORKERS=str(WORKERS), LOCUST_USERS=USERS, LOCUST_SPAWN_RATE=USERS, LOCUST_RUN_TIME="3s",
        LOADTEST_THINK_TIME="0", LOADTEST_REPORT_DIR=str(reports), LOADTEST_TURN_LOG="true",
    )  # fmt: skip
    worker_env = locust_env(**{**environment("worker"), **here})
    worker_env.update(LOCUST_MASTER_NODE_HOST="127.0.0.1", LOCUST_MASTER_NODE_PORT=port)
    master = image_command(master_env, folder, "master")
    workers = [image_command(worker_env, folder, f"worker{i}") for i in range(WORKERS)]

    def finish() -> tuple[LocustRun, dict[str, Any]]:
        try:
            run = wait_locust(master, folder / "master", reports)
            for worker in workers:
                worker.wait(timeout=30)
            return run, mock.stats()
        finally:
            for proc in workers:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            mock.process.stop()

    return finish


def test_the_image_command_with_several_workers_merges_exactly(
    image_run: tuple[LocustRun, dict[str, Any]],
) -> None:
    run, served = image_run
    assert run.returncode == 0, run.output[-3000:]
    run_dir = (run.report_dir / "latest").resolve()
    summary = orjson.loads((run_dir / "summary.json").read_bytes())
    assert summary["run"]["workers"] == WORKERS and summary["run"]["mock"] is False
    assert "workers_without_final_report" not in summary["run"]
    # The raw samples every process logged, in one histogram, give the very same percentiles.
    assert_merged_exactly(summary, run_dir, served, processes=WORKERS)
    counts, ttft = summary["counts"], summary["metrics"]["ttft_ms"]
    assert sum(entry["ttft_ms"]["count"] for entry in summary["by_turn"].values()) == ttft["count"]
    # The time series merges across workers like the totals.
    points = summary["timeline"]["points"]
    assert sum(p["turns_ok"] for p in points) == counts["turns_ok"]
    assert sum(p["ttft_ms"]["count"] for p in points) == ttft["count"]
    assert sum(p["chunks"] for p in points) == counts["chunks"]
    assert max(p["users"] or 0 for p in points) == int(USERS)
