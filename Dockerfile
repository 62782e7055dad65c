# syntax=docker/dockerfile:1
# loadtest as an image: a Locust master, a worker or the built-in mock, configured through Locust's
# LOCUST_* variables and loadtest's own (`loadtest options` lists them); deploy/ runs it with compose
# or on Kubernetes. Reports go to the /reports volume.

# Every dependency as a wheel, built here: the image itself needs no compiler and no package index.
FROM python:3.12-slim AS wheels
WORKDIR /src
COPY pyproject.toml README.md ./
COPY loadtest ./loadtest
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LOADTEST_REPORT_DIR=/reports
# The wheels are mounted, not copied: they take no layer of the image.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index /wheels/*.whl \
    && useradd --system --uid 10001 --home-dir /app --no-create-home loadtest \
    && mkdir /reports \
    && chown loadtest /reports
WORKDIR /app
COPY locustfiles ./locustfiles
COPY deploy/entrypoint.sh /usr/local/bin/loadtest-entrypoint
# Numeric, so Kubernetes' runAsNonRoot can check it.
USER 10001
VOLUME /reports
# Locust's web UI and its master's port for workers; the mock service listens on 8000 (deploy/).
EXPOSE 8089 5557 8000
ENTRYPOINT ["loadtest-entrypoint"]
CMD ["locust", "-f", "locustfiles/chat.py"]
