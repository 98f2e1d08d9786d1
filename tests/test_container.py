"""Facts the orchestrator relies on, read from the Dockerfile and docker-compose.yml (no engine here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from service.config import Settings, check_environment

REPO = Path(__file__).resolve().parents[1]


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", (REPO / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_runs_as_non_root() -> None:
    users = [arg for op, arg in dockerfile_instructions() if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_installs_dependencies_before_copying_code() -> None:
    ops = dockerfile_instructions()
    install = next(i for i, (op, arg) in enumerate(ops) if op == "RUN" and "pip install" in arg)
    code_copies = [i for i, (op, arg) in enumerate(ops) if op == "COPY" and "service" in arg]
    assert code_copies and install < min(code_copies)
    assert any(op == "COPY" and arg.startswith("models/") for op, arg in ops)  # the shipped model


def test_dockerfile_cmd_is_exec_form_and_healthcheck_probes_readiness() -> None:
    ops = dict(dockerfile_instructions())
    command = json.loads(ops["CMD"])
    assert command[:3] == ["uvicorn", "--factory", "service.app:create_app"]
    assert "/health/ready" in ops["HEALTHCHECK"] and "CMD [" in ops["HEALTHCHECK"]


def test_the_image_and_make_serve_cap_mallocs_arenas() -> None:
    """Two glibc arenas (docs/benchmarks.md: ~80-110 MiB less once warm), set where the service starts."""
    env_args = " ".join(arg for op, arg in dockerfile_instructions() if op == "ENV")
    assert dict(re.findall(r"(\w+)=(\S+)", env_args)).get("MALLOC_ARENA_MAX") == "2"
    serve = (REPO / "Makefile").read_text().split("\nserve:", 1)[1].split("\n\n", 1)[0]
    assert "MALLOC_ARENA_MAX=$${MALLOC_ARENA_MAX:-2} $(VENV)/bin/uvicorn" in serve  # make: $$ is $


def test_compose_reserves_a_gpu_publishes_locally_and_drains() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    service = compose["services"]["digitserve"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert all(str(port).startswith("127.0.0.1:") for port in service["ports"])
    assert "/health/ready" in " ".join(service["healthcheck"]["test"])
    grace_s = int(service["stop_grace_period"].rstrip("s"))
    drain_s = float(service["environment"].get("DIGITSERVE_DRAIN_TIMEOUT_S", Settings().drain_timeout_s))
    assert grace_s > drain_s
    assert any(v.endswith(":ro") for v in service["volumes"])


def test_compose_train_profile_uses_the_same_image() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    train = compose["services"]["train"]
    assert train["profiles"] == ["train"] and train["image"] == compose["services"]["digitserve"]["image"]
    assert train["command"][:3] == ["python", "-m", "training.train"]


def test_the_images_and_composes_settings_are_settings_the_service_takes() -> None:
    """The service refuses to start on a DIGITSERVE_* variable that names no setting, or a value out
    of range: the Dockerfile's ENV and the compose file's environment must pass both."""
    env_args = " ".join(arg for op, arg in dockerfile_instructions() if op == "ENV")
    image_env = dict(re.findall(r"(\w+)=(\S+)", env_args))
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    compose_env = {k: str(v) for k, v in compose["services"]["digitserve"]["environment"].items()}
    environ = {**image_env, **compose_env}
    assert "DIGITSERVE_DEVICE" in image_env and "DIGITSERVE_CHECKPOINT" in compose_env
    check_environment(environ)
    prefix = "DIGITSERVE_"
    Settings(**{k.removeprefix(prefix).lower(): v for k, v in environ.items() if k.startswith(prefix)})
