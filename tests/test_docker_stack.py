"""INTEGRATION TEST of deploy/compose.yaml on a Docker host (testcontainers): the whole stack
built and started with `docker compose up --wait` (every healthcheck green), then the worker's
web port answers /health and nothing of Faust's, and the public reader reads the public layer.

It needs a Docker engine with the compose plugin. The development machines and CI have
neither (the Docker client only), so there it skips, saying which is missing; the compose
file's structure, its scripts and its database init script are tested without Docker in
tests/test_deploy.py.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from streams.settings import REPO_ROOT

pytestmark = pytest.mark.integration

DEPLOY = REPO_ROOT / "deploy"


def _why_no_docker() -> str | None:
    """None when a Docker engine and the compose plugin answer; else what is missing."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
    except Exception as e:  # noqa: BLE001 - any failure means no usable engine
        return f"no Docker engine answers ({e.__class__.__name__})"
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if plugin.returncode != 0:
        return "the docker compose plugin is not installed"
    return None


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_the_compose_stack_comes_up_healthy_and_serves_only_what_it_should() -> None:
    reason = _why_no_docker()
    if reason is not None:
        pytest.skip(f"needs a Docker engine with compose to run deploy/compose.yaml: {reason}")
    from testcontainers.compose import DockerCompose

    subprocess.run(["bash", str(DEPLOY / "make-secrets.sh")], check=True)
    with DockerCompose(DEPLOY, compose_file_name="compose.yaml", build=True, wait=True) as stack:
        host, port = stack.get_service_host_and_port("worker", 6066)
        deadline = time.monotonic() + 300
        while _get(f"http://{host}:{port}/health") != 200:
            assert time.monotonic() < deadline, "the worker's /health never answered 200"
            time.sleep(2)
        assert _get(f"http://{host}:{port}/metrics") == 200
        for path in ("/", "/table/", "/router/", "/graph/", "/stats/"):
            assert _get(f"http://{host}:{port}{path}") == 404, path
        # The public reader reads the public layer and no table (its password is a secret).
        password = (DEPLOY / "secrets" / "grafana_db_password_public").read_text().strip()
        stdout, stderr, code = stack.exec_in_container(
            ["sh", "-c", f"PGPASSWORD='{password}' psql -h 127.0.0.1 -U palliwatch_reader "
             "-d palliwatch -Atc 'SELECT count(*) FROM published.indicator_latest'"],
            service_name="timescaledb",
        )  # fmt: skip
        assert code == 0 and stdout.strip().isdigit(), (stdout, stderr)
        refused = stack.exec_in_container(
            ["sh", "-c", f"PGPASSWORD='{password}' psql -h 127.0.0.1 -U palliwatch_reader "
             "-d palliwatch -Atc 'SELECT count(*) FROM surveys'"],
            service_name="timescaledb",
        )  # fmt: skip
        assert refused[2] != 0 and "permission denied" in refused[1], refused
