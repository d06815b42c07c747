# The application image of docker-compose.yml: the one-shot migrate, web (gunicorn: admin and
# /healthz), the Celery worker, beat and Flower. Python 3.11 on Debian 12 (bookworm).
#
# SQL Server driver: Microsoft's ODBC Driver 18 from its Debian 12 apt repository, rather than
# mssql-python's bundled driver. mssql-django imports pyodbc in every case (so unixODBC is needed
# anyway), ODBC Driver 18 is its default and best-tested path (Entra ID authentication included),
# and it is the driver the Azure Functions Python images ship, so compose and Azure run the same
# driver. The bundled driver stays one setting away: DATABASE_URL=...&python_driver=mssql_python.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ACCEPT_EULA=Y accepts the Microsoft ODBC Driver licence (https://aka.ms/odbc18eula).
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl gnupg; \
    curl -fsSL https://packages.microsoft.com/keys/microsoft.asc | gpg --dearmor -o /usr/share/keyrings/microsoft-prod.gpg; \
    curl -fsSL https://packages.microsoft.com/config/debian/12/prod.list -o /etc/apt/sources.list.d/mssql-release.list; \
    apt-get update; \
    ACCEPT_EULA=Y apt-get install -y --no-install-recommends msodbcsql18 unixodbc; \
    rm -rf /var/lib/apt/lists/*; \
    odbcinst -q -d -n "ODBC Driver 18 for SQL Server"

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
WORKDIR /app

COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY . .
# Static files of the admin, collected at build time (no secret or database needed for that).
# var/beat is the mount point of beat's volume, which takes its owner from it; nothing else is
# written at run time (docker-compose.yml runs the application containers read-only).
RUN DJANGO_DEBUG=1 python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p var/beat \
    && chown app:app var/beat

USER app
EXPOSE 8000 5555
CMD ["gunicorn", "pipeline.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2", "--config", "python:pipeline.gunicorn_conf"]
