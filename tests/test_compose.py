"""docker-compose.yml, the Dockerfile and .env.example, checked without Docker.

Docker does not run where the suite runs, so the compose file is loaded as YAML (after the same
``${VAR:?}`` / ``${VAR:-default}`` / ``$$`` interpolation compose does) and checked for what a
broken stack would get wrong: the services and their images, health checks, start order
(``depends_on`` conditions), loopback-only ports, exactly one beat, Flower behind basic auth, and
that every command of the application image names a real module, WSGI app, Celery app and
subcommand, or management command of this repository.
"""

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.core.management import get_commands
from django.urls import resolve

from pipeline.dburl import MSSQL_DEFAULT_DRIVER, parse_database_url

pytestmark = pytest.mark.nodb
ROOT = Path(__file__).resolve().parent.parent
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()
SAMPLE_ENV = {"MSSQL_SA_PASSWORD": "Pw-1sa-secret", "PIPELINE_DB_PASSWORD": "Pw-1app-secret",
              "DJANGO_SECRET_KEY": "k" * 60, "FLOWER_USER": "admin", "FLOWER_PASSWORD": "flower-secret"}
APP_SERVICES = {"migrate", "web", "worker", "beat", "flower"}
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def interpolate(text: str, env: dict) -> str:
    """Compose's variable substitution: ${VAR}, ${VAR:-default}, ${VAR:?error}, and $$ for $."""
    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        value = env.get(name)
        if operator and operator.endswith("?") and not value:
            raise ValueError(f"{name}: {argument}")
        if operator and operator.endswith("-") and not value:
            return argument
        return value or ""
    return _VARIABLE.sub(substitute, text)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(interpolate(COMPOSE_TEXT, SAMPLE_ENV))


def argv(command) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command)


def healthcheck_argv(service: dict) -> list[str]:
    test = service["healthcheck"]["test"]
    if test[0] == "CMD-SHELL":
        return shlex.split(test[1])
    assert test[0] == "CMD", test
    return list(test[1:])


def test_services_and_images(compose):
    services = compose["services"]
    assert set(services) == {"sqlserver", "db-init", "redis", "migrate", "web", "worker", "beat", "flower"}
    assert services["sqlserver"]["image"] == "mcr.microsoft.com/mssql/server:2022-latest"
    assert services["db-init"]["image"] == services["sqlserver"]["image"]  # sqlcmd comes with it
    assert services["redis"]["image"].startswith("redis:")
    for name in APP_SERVICES:
        assert services[name]["build"] == "." and services[name]["image"] == "feed-pipeline:local", name


def test_sql_server_reads_its_password_from_env_and_checks_health_with_sqlcmd(compose):
    sqlserver = compose["services"]["sqlserver"]
    assert sqlserver["environment"]["ACCEPT_EULA"] == "Y"
    assert sqlserver["environment"]["MSSQL_SA_PASSWORD"] == SAMPLE_ENV["MSSQL_SA_PASSWORD"]
    assert "${MSSQL_SA_PASSWORD:?" in COMPOSE_TEXT  # required: compose refuses to start without it
    check = healthcheck_argv(sqlserver)
    assert check[0] == "/opt/mssql-tools18/bin/sqlcmd" and "-C" in check and "-b" in check
    assert sqlserver["environment"]["SQLCMDPASSWORD"] == SAMPLE_ENV["MSSQL_SA_PASSWORD"]  # not on the command line
    assert any(v.endswith(":/var/opt/mssql") for v in sqlserver["volumes"])


def test_db_init_creates_the_database_and_the_application_login(compose):
    service = compose["services"]["db-init"]
    assert service["entrypoint"] == ["/opt/mssql-tools18/bin/sqlcmd"] and service["restart"] == "no"
    script = service["command"][-1]
    assert "CREATE DATABASE [pipeline]" in script and "CREATE LOGIN [pipeline]" in script
    assert "ALTER ROLE db_owner ADD MEMBER [pipeline]" in script
    # sqlcmd substitutes $(PIPELINE_DB_PASSWORD) from its environment; compose must leave it alone.
    assert "$(PIPELINE_DB_PASSWORD)" in script and SAMPLE_ENV["PIPELINE_DB_PASSWORD"] not in script
    assert service["environment"]["PIPELINE_DB_PASSWORD"] == SAMPLE_ENV["PIPELINE_DB_PASSWORD"]


def test_published_ports_are_bound_to_loopback(compose):
    published = {name: s["ports"] for name, s in compose["services"].items() if s.get("ports")}
    assert set(published) == {"sqlserver", "web", "flower"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_start_order_waits_for_health_and_for_the_one_shots(compose):
    services = compose["services"]
    expected = {
        "db-init": {"sqlserver": "service_healthy"},
        "migrate": {"db-init": "service_completed_successfully"},
        "web": {"migrate": "service_completed_successfully", "redis": "service_healthy"},
        "worker": {"migrate": "service_completed_successfully", "redis": "service_healthy"},
        "beat": {"migrate": "service_completed_successfully", "redis": "service_healthy"},
        "flower": {"migrate": "service_completed_successfully", "redis": "service_healthy"},
    }
    for name, wanted in expected.items():
        depends = services[name]["depends_on"]
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a list"
        assert {dep: spec["condition"] for dep, spec in depends.items()} == wanted, name
    for one_shot in ("db-init", "migrate"):
        assert services[one_shot]["restart"] == "no"
    for name in ("web", "worker", "beat", "flower", "sqlserver", "redis"):
        assert services[name]["restart"] == "unless-stopped"


def test_health_checks(compose):
    services = compose["services"]
    assert {name for name, s in services.items() if "healthcheck" in s} == {"sqlserver", "redis", "web", "worker", "flower"}
    worker = healthcheck_argv(services["worker"])
    assert worker[:5] == ["celery", "-A", "pipeline", "inspect", "ping"]
    assert "--destination" in worker and worker[worker.index("--destination") + 1] == "celery@$HOSTNAME"
    web = " ".join(healthcheck_argv(services["web"]))
    assert "http://127.0.0.1:8000/healthz" in web
    assert resolve("/healthz").url_name == "healthz"
    assert "http://127.0.0.1:5555/healthcheck" in " ".join(healthcheck_argv(services["flower"]))
    assert healthcheck_argv(services["redis"]) == ["redis-cli", "ping"]


def test_exactly_one_beat_and_no_worker_embeds_one(compose):
    beats = [name for name, s in compose["services"].items()
             if "command" in s and "beat" in argv(s["command"]) and argv(s["command"])[0] == "celery"]
    assert beats == ["beat"]
    beat = compose["services"]["beat"]
    assert beat["deploy"]["replicas"] == 1
    worker = argv(compose["services"]["worker"]["command"])
    assert "-B" not in worker and "--beat" not in worker
    assert beat["environment"]["CELERY_BEAT_SCHEDULE_FILENAME"].startswith("/app/var/beat/")
    assert any(v.endswith(":/app/var/beat") for v in beat["volumes"])


def test_application_containers_are_read_only_but_for_tmp_and_beat_state(compose):
    # What scripts/smoke checks for real from a read-only tree: no command writes into /app.
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["read_only"] is True and service["tmpfs"] == ["/tmp"], name
        assert service["environment"]["XDG_RUNTIME_DIR"] == "/tmp", name  # gunicorn's control socket
    assert [v for s in compose["services"].values() if s.get("read_only") for v in s.get("volumes", ())] == \
        ["beat-state:/app/var/beat"]
    assert "chown app:app var/beat" in (ROOT / "Dockerfile").read_text()  # the new volume's owner


def test_flower_asks_for_basic_auth(compose):
    flower = compose["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "admin:flower-secret"
    assert flower["environment"]["CELERY_BROKER_URL"] == "redis://redis:6379/0"  # the app's settings kept
    with pytest.raises(ValueError, match="FLOWER_PASSWORD"):
        interpolate(COMPOSE_TEXT, {**SAMPLE_ENV, "FLOWER_PASSWORD": ""})


def _check_app_command(command: list[str]) -> None:
    if command[:2] == ["python", "manage.py"]:
        assert command[2] in get_commands(), f"no management command {command[2]!r}"
    elif command[0] == "celery":
        from celery.app.utils import find_app
        from celery.bin.celery import celery as celery_cli

        app = find_app(command[command.index("-A") + 1])
        app.loader.import_default_modules()  # what a worker does at start: autodiscover the tasks
        assert app.main == "pipeline"
        for entry in app.conf.beat_schedule.values():
            assert entry["task"] in app.tasks, f"beat schedules {entry['task']}, which no module defines"
        subcommand = command[command.index("-A") + 2]
        assert subcommand in celery_cli.commands, f"celery has no {subcommand!r} command (plugin installed?)"
    elif command[0] == "gunicorn":
        module, _, attribute = command[1].partition(":")
        assert callable(getattr(importlib.import_module(module), attribute))
        importlib.import_module("gunicorn")
    else:
        raise AssertionError(f"unexpected command {command}")


def test_every_command_names_a_real_module_or_management_command(compose):
    services = compose["services"]
    for name in APP_SERVICES:
        _check_app_command(argv(services[name]["command"]))
        if "healthcheck" in services[name] and healthcheck_argv(services[name])[0] == "celery":
            _check_app_command(healthcheck_argv(services[name]))
    dockerfile_cmd = re.search(r"^CMD (\[.*\])$", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    _check_app_command(yaml.safe_load(dockerfile_cmd))


def test_the_database_url_compose_builds_is_sql_server_on_the_sqlserver_service(compose):
    env = compose["services"]["web"]["environment"]
    db = parse_database_url(env["DATABASE_URL"], base_dir=ROOT)
    assert (db["ENGINE"], db["HOST"], db["PORT"], db["NAME"], db["USER"]) == ("mssql", "sqlserver", "1433", "pipeline", "pipeline")
    assert db["PASSWORD"] == SAMPLE_ENV["PIPELINE_DB_PASSWORD"]
    assert db["OPTIONS"] == {"driver": MSSQL_DEFAULT_DRIVER, "extra_params": "Encrypt=yes;TrustServerCertificate=yes",
                             "connection_retries": 5, "connection_retry_backoff_time": 5}
    assert env["CELERY_BROKER_URL"] == "redis://redis:6379/0"
    for name in APP_SERVICES:
        assert compose["services"][name]["environment"]["DATABASE_URL"] == env["DATABASE_URL"], name


def test_env_example_names_every_variable_compose_reads():
    referenced = {m.group(1) for m in _VARIABLE.finditer(COMPOSE_TEXT) if m.group(1)}
    required = {m.group(1) for m in _VARIABLE.finditer(COMPOSE_TEXT) if m.group(2) == ":?"}
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.splitlines() if line and not line.startswith("#"))
    assert referenced <= set(example), referenced - set(example)
    secrets = {"MSSQL_SA_PASSWORD", "PIPELINE_DB_PASSWORD", "DJANGO_SECRET_KEY", "FLOWER_PASSWORD"}
    assert secrets <= required and all(example[name] == "" for name in secrets), "no working default secrets"


def test_dockerfile_installs_odbc_driver_18_and_runs_unprivileged():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim-bookworm$", text, re.M)
    assert "packages.microsoft.com/config/debian/12/prod.list" in text
    assert "ACCEPT_EULA=Y apt-get install" in text and "msodbcsql18" in text and "unixodbc" in text
    assert f'odbcinst -q -d -n "{MSSQL_DEFAULT_DRIVER}"' in text  # the build fails if the name differs
    assert "pip install -r requirements.txt" in text
    assert re.search(r"^USER app$", text, re.M)


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", "local.settings.json", ".venv", "var", ".git"} <= ignored
