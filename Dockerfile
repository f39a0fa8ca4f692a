# syntax=docker/dockerfile:1
# Two images from one file (see docker-compose.yml):
#   app  (the default): web (gunicorn), worker and beat; static files collected
#        at build time and served by WhiteNoise.
#   demo: the local demo Step Functions endpoint (python -m demo), for
#        `docker compose --profile demo up`.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The processes run as this user; it owns only the var directory (beat's
# schedule, a generated demo password), never the code.
RUN groupadd --system --gid 10001 sfnui \
 && useradd --system --uid 10001 --gid sfnui --home-dir /var/lib/sfnui --shell /usr/sbin/nologin sfnui \
 && install -d -o sfnui -g sfnui -m 0750 /var/lib/sfnui
WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt


FROM base AS demo
COPY requirements-demo.txt ./
RUN pip install -r requirements-demo.txt
COPY fakeaws/ fakeaws/
COPY demo/ demo/
USER sfnui
EXPOSE 5000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/fakeaws/calls', timeout=4)"]
CMD ["python", "-m", "demo", "--host", "0.0.0.0", "--port", "5000"]


FROM base AS app
COPY . .
# The settings refuse the development secret key when DEBUG is off, and
# collectstatic needs DEBUG off to write the hashed manifest that WhiteNoise
# serves: a throwaway key for this one command, not kept in the image.
RUN DJANGO_SECRET_KEY=build-only-key-for-collectstatic-not-used-at-run-time-not-kept \
    DJANGO_DEBUG=false \
    SFNUI_VAR_DIR=/tmp/sfnui-build \
    python manage.py collectstatic --noinput \
 && rm -rf /tmp/sfnui-build
ENV SFNUI_VAR_DIR=/var/lib/sfnui
USER sfnui
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["python", "bin/healthcheck.py", "http://127.0.0.1:8000/healthz"]
# --timeout: well above SFNUI_AWS_PAGE_DEADLINE (5 s, all the AWS calls of a
# page) and a duplicate stop's wait for the first (7 s), so a worker is never
# killed while it waits for AWS.
CMD ["gunicorn", "sfnui.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "20", "--access-logfile", "-"]
