"""The production recipe (deploy/, docs/deploy.md), checked without a container engine.

What can be checked here is checked: the image runs nothing but the Procfile's commands, the
compose file parses and wires the release step, health checks and warm shutdowns, every
variable it sets is documented, and its Beacon environment passes `check --deploy`.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BEACON_TYPES = {"release", "web", "worker", "beat"}
# ${VAR}, ${VAR:-default}, ${VAR:?error} in the compose file.
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?(?P<op>[-?])(?P<word>[^}]*))?\}")


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line and not line.startswith("#"))


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def beacon_services() -> dict[str, dict]:
    """The services that run the Beacon image."""
    return {name: service for name, service in compose()["services"].items()
            if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"}


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def seconds(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(s|m)", duration).groups()
    return float(number) * (60 if unit == "m" else 1)


@pytest.mark.parametrize("process_type", sorted(procfile()))
def test_the_image_entry_point_runs_exactly_the_procfile_command(process_type: str) -> None:
    result = subprocess.run([str(DEPLOY / "procfile-run"), "--dry-run", process_type],
                            capture_output=True, text=True, check=False, timeout=10)

    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n") == procfile()[process_type]


def test_the_image_entry_point_refuses_a_type_the_procfile_lacks() -> None:
    result = subprocess.run([str(DEPLOY / "procfile-run"), "shell"], capture_output=True, text=True, check=False, timeout=10)

    assert result.returncode == 2
    assert "no process type 'shell'" in result.stderr and "web" in result.stderr


def test_the_dockerfile_is_multi_stage_runs_as_a_user_and_starts_procfile_types() -> None:
    instructions = dockerfile_instructions()
    stages = [args.split()[-1] for op, args in instructions if op == "FROM"]
    last_stage = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    final = instructions[last_stage:]

    assert len(stages) >= 2
    for op, args in instructions:
        if op == "COPY" and "--from=" in args:
            assert re.search(r"--from=(\w+)", args).group(1) in stages[:-1]
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert dict(final)["ENTRYPOINT"] == '["deploy/procfile-run"]'
    assert yaml.safe_load(dict(final)["CMD"]) == ["web"]
    # The release step (collectstatic) runs as that user, so it must own the static files.
    assert any(op == "RUN" and "collectstatic" in args and "chown" in args and users[-1] in args for op, args in final)


def test_compose_runs_the_procfile_types_with_the_release_step_first() -> None:
    services = beacon_services()
    commands = {name: service["command"] for name, service in services.items()}

    assert all(len(command) == 1 and command[0] in procfile() for command in commands.values()), commands
    assert {command[0] for command in commands.values()} == BEACON_TYPES  # never the development sandbox
    assert services["release"]["restart"] == "no"
    for name in ("postgres", "redis"):
        assert services["release"]["depends_on"][name]["condition"] == "service_healthy"
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["release"]["condition"] == "service_completed_successfully"


def test_compose_health_checks_and_warm_worker_shutdown() -> None:
    services = compose()["services"]

    for name in ("postgres", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    # TERM is Celery's warm shutdown; the grace period outlasts the longest task.
    assert services["worker"]["stop_signal"] == "SIGTERM"
    assert seconds(services["worker"]["stop_grace_period"]) > settings.CELERY_TASK_TIME_LIMIT
    assert "noeviction" in services["redis"]["command"]  # the broker must never lose a task


def test_every_variable_compose_sets_is_documented() -> None:
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    compose_documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (DEPLOY / "compose.env.example").read_text(), re.MULTILINE))
    instructions = dockerfile_instructions()
    last_stage = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    image_env = " ".join(args for op, args in instructions[last_stage:] if op == "ENV")

    set_for_beacon = {name for service in beacon_services().values() for name in service["environment"]}
    set_for_beacon |= set(re.findall(r"([A-Z][A-Z0-9_]+)=", image_env)) - {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
    interpolated = {match["name"] for match in INTERPOLATION.finditer((DEPLOY / "compose.yaml").read_text())}

    assert set_for_beacon - documented == set()
    assert interpolated - compose_documented == set()


def test_the_compose_environment_passes_check_deploy() -> None:
    """Beacon's environment in the compose file, filled in as deploy/compose.env.example asks."""
    values = {"BEACON_DOMAIN": "beacon.example.com", "SECRET_KEY": secrets.token_urlsafe(50), "POSTGRES_PASSWORD": "pw",
              "PAYMENT_GATEWAY": "checkout.tests.gateways.ProviderLikeGateway", "METRICS_TOKEN": "t" * 32}

    def fill(value: str) -> str:
        return INTERPOLATION.sub(lambda m: values.get(m["name"]) or (m["word"] if m["op"] == "-" else ""), str(value))

    env = {name: fill(value) for name, value in beacon_services()["web"]["environment"].items()}
    env.update(PATH=os.environ["PATH"], HOME=os.environ.get("HOME", "/tmp"))

    check = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)

    assert check.returncode == 0, check.stdout + check.stderr
