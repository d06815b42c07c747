"""The web process in production mode, behind a TLS proxy (``DJANGO_HTTPS``), as an operator meets it.

``manage.py check --deploy --fail-level WARNING`` runs as a real process with the real settings
module in production mode (``DJANGO_DEBUG`` unset, a real secret key, a host name in
``DJANGO_ALLOWED_HOSTS``): it fails naming the four warnings without ``DJANGO_HTTPS`` and passes with
it. Then a real gunicorn on loopback serves the admin and ``/healthz`` from a migrated SQLite file of
this module's own: requests are sent as the proxy would send them (``X-Forwarded-Proto``) or as a
client or health check that bypasses it would (plain HTTP), and what comes back is what a browser and
a health check act on: the redirect, the HSTS header, the cookies' ``Secure`` flag, the status code.
gunicorn trusts no peer's forwarding headers here (``--forwarded-allow-ips`` names an address that is
not loopback), as in a container where the proxy is another machine: Django alone decides what https is.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from http.cookies import SimpleCookie
from urllib.parse import urlencode

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.nodb

HOST = "pipeline.example.com"
SECRET_KEY = secrets.token_urlsafe(50)
PASSWORD = secrets.token_urlsafe(16)
YEAR = 365 * 86400
# What the test process's environment sets for the test settings; the real settings start clean.
_OURS = ("DJANGO_", "DATABASE_URL", "INGEST_", "DB_", "LOG_", "TIME_ZONE", "CONN_", "PIPELINE_", "CELERY_", "STATIC_ROOT")
DEPLOY_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")


def production_env(tmp, **overrides: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    return {**clean, "DJANGO_SETTINGS_MODULE": "pipeline.settings", "DJANGO_SECRET_KEY": SECRET_KEY,
            "DJANGO_ALLOWED_HOSTS": f"{HOST},127.0.0.1", "DATABASE_URL": f"sqlite:///{tmp / 'pipeline.sqlite3'}",
            "STATIC_ROOT": str(tmp / "static"), "PYTHONDONTWRITEBYTECODE": "1", **overrides}


def run(argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def explain(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def check_deploy(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    return run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
               production_env(tmp_path, **overrides))


# --- check --deploy --------------------------------------------------------------------------------


def test_check_deploy_fails_in_production_mode_without_django_https(tmp_path):
    result = check_deploy(tmp_path)
    assert result.returncode != 0, explain(result)
    assert "SystemCheckError" in result.stderr, explain(result)
    found = sorted(set(re.findall(r"\((security\.W\d+)\)", result.stderr)))
    assert found == sorted(DEPLOY_WARNINGS), explain(result)  # HSTS, SSL redirect, the two cookies; nothing else


@pytest.mark.parametrize("overrides", [
    {"DJANGO_HTTPS": "1"},
    {"DJANGO_HTTPS": "true", "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1", "DJANGO_HSTS_PRELOAD": "1"},
], ids=["https", "https-subdomains-preload"])
def test_check_deploy_passes_with_django_https(tmp_path, overrides):
    result = check_deploy(tmp_path, **overrides)
    assert result.returncode == 0, explain(result)
    assert "System check identified no issues" in result.stdout, explain(result)
    assert "WARNING" not in result.stderr and "security.W" not in result.stderr, explain(result)


@pytest.mark.parametrize(("overrides", "sentence"), [
    ({"DJANGO_HTTPS": "maybe"}, "DJANGO_HTTPS must be true or false, not 'maybe'."),
    ({"DJANGO_HTTPS": "1", "DJANGO_HSTS_SECONDS": "a year"}, "DJANGO_HSTS_SECONDS must be a whole number, not 'a year'."),
    # Checked when DJANGO_HTTPS is off too: turning it on later must not be the moment a typo surfaces.
    ({"DJANGO_HSTS_SECONDS": "-1"}, "DJANGO_HSTS_SECONDS must be at least 0, not '-1'."),
    ({"DJANGO_HTTPS": "1", "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "sometimes"},
     "DJANGO_HSTS_INCLUDE_SUBDOMAINS must be true or false, not 'sometimes'."),
    ({"DJANGO_HTTPS": "1", "DJANGO_HSTS_PRELOAD": "1"}, "DJANGO_HSTS_PRELOAD needs DJANGO_HSTS_INCLUDE_SUBDOMAINS on"),
    ({"DJANGO_HTTPS": "1", "DJANGO_HSTS_PRELOAD": "1", "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1", "DJANGO_HSTS_SECONDS": "3600"},
     "DJANGO_HSTS_SECONDS of at least 31536000"),
])
def test_a_bad_https_setting_is_one_sentence_and_exit_2(tmp_path, overrides, sentence):
    result = check_deploy(tmp_path, **overrides)
    assert result.returncode == 2, explain(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("manage.py: configuration error: "), explain(result)
    assert sentence in lines[0], explain(result)


# --- A real gunicorn --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A migrated SQLite database with one superuser, and an empty STATIC_ROOT (the admin's pages
    need no static file to render)."""
    tmp = tmp_path_factory.mktemp("deploy")
    (tmp / "static").mkdir()
    script = ("import sys, django; django.setup()\n"
              "from django.core.management import call_command\n"
              "from django.contrib.auth import get_user_model\n"
              "call_command('migrate', verbosity=0)\n"
              "get_user_model().objects.create_superuser('operator', 'operator@example.invalid', sys.argv[1])\n")
    result = run([sys.executable, "-c", script, PASSWORD], production_env(tmp))
    assert result.returncode == 0, explain(result)
    return tmp


@contextmanager
def gunicorn(tmp, **overrides: str):
    """gunicorn serving pipeline.wsgi on a loopback socket bound here (no port race); yields the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    argv = [sys.executable, "-m", "gunicorn", "pipeline.wsgi:application", "--bind", f"fd://{listener.fileno()}",
            "--workers", "1", "--graceful-timeout", "5", "--forwarded-allow-ips", "192.0.2.1"]
    process = subprocess.Popen(argv, cwd=ROOT, env=production_env(tmp, **overrides), pass_fds=[listener.fileno()],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    listener.close()
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"gunicorn exited {process.returncode}:\n{process.stdout.read()}"
            try:
                request(port, "GET", "/healthz", host="127.0.0.1")
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not answer within 60 s"
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def request(port: int, method: str, path: str, *, host: str = HOST, proto: str | None = None,
            headers: dict[str, str] | None = None, body: str | None = None) -> tuple[http.client.HTTPResponse, str]:
    """One request, redirects not followed; ``proto`` is the X-Forwarded-Proto the proxy sets."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        sent = {"Host": host, **(headers or {})}
        if proto is not None:
            sent["X-Forwarded-Proto"] = proto
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def cookies(response: http.client.HTTPResponse) -> SimpleCookie:
    jar = SimpleCookie()
    for header in response.msg.get_all("Set-Cookie") or []:
        jar.load(header)
    return jar


def log_in(port: int, proto: str | None, origin: str) -> http.client.HTTPResponse:
    """The admin's login form, filled in and posted as a browser would, through the proxy or not."""
    page, html = request(port, "GET", "/admin/login/", proto=proto)
    assert page.status == 200, (page.status, page.getheaders())
    csrf_cookie = cookies(page)["csrftoken"].value
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    form = urlencode({"csrfmiddlewaretoken": token, "username": "operator", "password": PASSWORD, "next": "/admin/"})
    response, _ = request(port, "POST", "/admin/login/", proto=proto, body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf_cookie}",
        "Origin": origin, "Referer": f"{origin}/admin/login/"})
    return response


def test_behind_the_proxy_plain_http_is_redirected_https_is_served_with_hsts_and_secure_cookies(site):
    with gunicorn(site, DJANGO_HTTPS="1") as port:
        # A client that reaches the web process over plain HTTP is sent to https, path kept.
        plain, _ = request(port, "GET", "/admin/login/?next=/admin/")
        assert plain.status == 301 and plain.getheader("Location") == f"https://{HOST}/admin/login/?next=/admin/"
        said_http, _ = request(port, "GET", "/admin/", proto="http")  # the proxy received plain HTTP
        assert said_http.status == 301 and said_http.getheader("Location") == f"https://{HOST}/admin/"
        assert plain.getheader("Strict-Transport-Security") is None  # HSTS is sent over https only

        page, html = request(port, "GET", "/admin/login/", proto="https")
        assert page.status == 200 and 'name="username"' in html
        assert page.getheader("Strict-Transport-Security") == f"max-age={YEAR}"  # no subdomains, no preload
        assert cookies(page)["csrftoken"]["secure"] is True

        # The admin works behind the proxy on its host name (the Origin matches the forwarded scheme and host).
        logged_in = log_in(port, "https", f"https://{HOST}")
        assert logged_in.status == 302 and logged_in.getheader("Location") == "/admin/"
        session = cookies(logged_in)["sessionid"]
        assert session["secure"] is True and session["httponly"] is True
        admin, html = request(port, "GET", "/admin/", proto="https", headers={"Cookie": f"sessionid={session.value}"})
        assert admin.status == 200 and "Site administration" in html

        # The container's health check: plain HTTP to 127.0.0.1, no proxy, answered and not redirected.
        health, body = request(port, "GET", "/healthz", host=f"127.0.0.1:{port}")
        assert health.status == 200, (health.status, health.getheaders())
        assert json.loads(body)["database"] == "ok"
        # A load balancer's probe by host name, over plain HTTP, likewise.
        probe, _ = request(port, "GET", "/healthz")
        assert probe.status == 200 and probe.getheader("Location") is None


def test_hsts_subdomains_and_preload_only_when_asked_for(site):
    with gunicorn(site, DJANGO_HTTPS="1", DJANGO_HSTS_SECONDS=str(2 * YEAR), DJANGO_HSTS_INCLUDE_SUBDOMAINS="1",
                  DJANGO_HSTS_PRELOAD="on") as port:
        page, _ = request(port, "GET", "/admin/login/", proto="https")
        assert page.status == 200
        assert page.getheader("Strict-Transport-Security") == f"max-age={2 * YEAR}; includeSubDomains; preload"


def test_without_django_https_the_web_process_is_plain_http_as_before(site):
    with gunicorn(site) as port:
        page, _ = request(port, "GET", "/admin/login/")
        assert page.status == 200
        assert page.getheader("Strict-Transport-Security") is None
        assert cookies(page)["csrftoken"]["secure"] == ""
        # X-Forwarded-Proto means nothing without DJANGO_HTTPS: no HSTS, and the cookies stay plain.
        forwarded, _ = request(port, "GET", "/admin/login/", proto="https")
        assert forwarded.status == 200 and forwarded.getheader("Strict-Transport-Security") is None
        logged_in = log_in(port, None, f"http://{HOST}")
        assert logged_in.status == 302 and cookies(logged_in)["sessionid"]["secure"] == ""
