"""The production ``docker-compose.yml``, validated without a container engine.

``docker compose config`` (Compose v5, the client ``make test`` builds from deploy/compose-cli) parses and
interpolates it as ``docker compose up`` would; the raw file is also checked against the Compose
Specification's JSON schema (from the compose-go module that client is built from), and the resolved
model against what a PACS administrator and a security officer expect: health checks, restart
policies, named volumes, GPU reservations, secrets only in ignored env files, a pinned Orthanc Team image.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from oncoflow.core.config import REPO_ROOT

SERVICES = {"postgres", "keycloak", "orthanc", "orthanc-jobs", "pipeline-worker", "inference", "nginx"}
PROJECT_FILES = ("docker-compose.yml", "deploy", "keycloak", "inference", "orthanc-plugins")


def _compose(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker") is None or subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                        check=False).returncode != 0:
        pytest.fail("the docker compose client is missing (make test builds it: scripts/bootstrap.sh)")
    return subprocess.run(["docker", "compose", "--project-directory", str(project), *args], cwd=project,
                          capture_output=True, text=True, timeout=60, check=False)


def _project(tmp_path: Path, with_env_files: bool = True) -> Path:
    """A copy of the compose project; with the env files made from their committed examples."""
    project = tmp_path / "project"
    project.mkdir()
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("nnunet", "*.pth", "__pycache__"))
        else:
            shutil.copy(source, project / name)
    if with_env_files:
        for example in (project / "deploy" / "env").glob("*.env.example"):
            shutil.copy(example, example.with_suffix(""))
    return project


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    project = _project(tmp_path_factory.mktemp("compose"))
    result = _compose(project, "--profile", "triton", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_file_conforms_to_the_compose_specification_schema() -> None:
    import jsonschema

    go = shutil.which("go") or "/usr/local/go/bin/go"
    gomodcache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=False).stdout \
        if Path(go).exists() else ""
    schemas = sorted(Path(gomodcache.strip() or Path.home() / "go/pkg/mod").glob(
        "github.com/compose-spec/compose-go/v2@*/schema/compose-spec.json"))
    assert schemas, "compose-go's schema is missing (make test builds the compose client, which fetches it)"
    schema = json.loads(schemas[-1].read_text())
    document = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())  # merge keys resolved
    jsonschema.Draft7Validator(schema).validate(document)
    broken = {**document, "services": {**document["services"], "orthanc": {"restart": ["always"]}}}
    with pytest.raises(jsonschema.ValidationError):  # the check bites
        jsonschema.Draft7Validator(schema).validate(broken)


def test_every_service_is_health_checked_restarted_and_on_named_volumes(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == SERVICES | {"triton"}
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert service.get("restart") == "unless-stopped", f"{name}: restart {service.get('restart')}"
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":  # configuration and secrets only, read-only
                assert volume.get("read_only"), f"{name} binds {volume['source']} writable"
            else:
                assert volume["type"] == "volume" and volume["source"] in resolved["volumes"], (name, volume)
    assert {"postgres-data", "orthanc-storage", "oncoflow-home"} <= set(resolved["volumes"])
    # both Orthanc services share the index's files and OncoFlow's home
    for name in ("orthanc", "orthanc-jobs", "pipeline-worker"):
        assert {v["source"] for v in services[name]["volumes"]} >= {"orthanc-storage", "oncoflow-home"}


def test_workers_reserve_gpus_and_scale_by_replicas(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name in ("inference", "triton"):
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices and devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"], name
    assert services["inference"]["deploy"]["replicas"] == 1 and services["orthanc-jobs"]["deploy"]["replicas"] == 1
    worker = services["pipeline-worker"]
    assert worker["deploy"]["replicas"] == 0 and worker["entrypoint"][-1] == "oncoflow.pipeline.pipeline_worker"
    assert worker["environment"]["ONCOFLOW_ORTHANC_URL"] == "http://orthanc:8042"
    assert worker["healthcheck"]["test"][-1] == "--check" and "ports" not in worker
    assert services["triton"]["profiles"] == ["triton"]  # the alternative worker, off by default
    assert services["triton"]["command"][:2] == ["tritonserver", "--model-repository=/models"]
    environment = services["orthanc"]["environment"]
    assert environment["ONCOFLOW_WORKER_URL"] == "inference:8000"
    assert environment["ONCOFLOW_DATABASE_URL"].startswith("postgresql://oncoflow:")  # the shared queue
    assert environment["ONCOFLOW_ORTHANC_INDEX_URL"].startswith("postgresql://orthanc:")
    assert environment["ONCOFLOW_AUTH"] == "on" and environment["ONCOFLOW_HTTP_REMOTE_ACCESS"] == "on"


def test_replicas_and_the_worker_follow_the_environment(tmp_path: Path) -> None:
    project = _project(tmp_path)
    result = subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=project, capture_output=True,
                            text=True, timeout=60, check=False,
                            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path.home()),
                                 "ONCOFLOW_INFERENCE_REPLICAS": "4", "ONCOFLOW_JOB_ORTHANCS": "3",
                                 "ONCOFLOW_PIPELINE_WORKERS": "2",
                                 "ONCOFLOW_WORKER_URL": "triton:8000"})
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert services["inference"]["deploy"]["replicas"] == 4 and services["orthanc-jobs"]["deploy"]["replicas"] == 3
    assert services["pipeline-worker"]["deploy"]["replicas"] == 2
    assert services["orthanc-jobs"]["environment"]["ONCOFLOW_WORKER_URL"] == "triton:8000"


def test_secrets_live_only_in_ignored_env_files(tmp_path: Path) -> None:
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    assert "PASSWORD:" not in text and "PASSWORD=" not in text, "a secret is written into docker-compose.yml"
    for name in ("postgres", "oncoflow", "keycloak"):
        env_file = f"deploy/env/{name}.env"
        assert (REPO_ROOT / f"{env_file}.example").is_file()
        ignored = subprocess.run(["git", "check-ignore", "-q", env_file], cwd=REPO_ROOT, check=False)
        assert ignored.returncode == 0, f"{env_file} is not ignored by git"
    assert subprocess.run(["git", "check-ignore", "-q", "deploy/secrets/tls/server-key.pem"], cwd=REPO_ROOT,
                          check=False).returncode == 0
    missing = _compose(_project(tmp_path, with_env_files=False), "config", "--quiet")
    assert missing.returncode != 0 and ".env not found" in missing.stderr, missing.stderr  # no silent defaults


def test_the_images_and_tls_front_are_pinned() -> None:
    dockerfile = (REPO_ROOT / "orthanc-plugins" / "Dockerfile").read_text()
    assert "FROM orthancteam/orthanc:25.4.0" in dockerfile  # the last bookworm (Python 3.11) release
    assert "oncoflow.services.orthanc_config" in dockerfile  # OncoFlow's own configuration, generated at start
    nginx = (REPO_ROOT / "deploy" / "nginx" / "oncoflow.conf.template").read_text()
    assert "listen 443 ssl" in nginx and "Strict-Transport-Security" in nginx and "return 301 https" in nginx
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: image {image!r} is not pinned"
    assert compose["networks"]["backend"]["internal"] is True
