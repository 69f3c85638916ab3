# syntax=docker/dockerfile:1
# framecast gateway: built from the repository root (`docker build -f deploy/images/gateway.Dockerfile .`).
# Only this service's distributions and their dependencies, at the versions of constraints.txt.
ARG PYTHON=python:3.11-slim-bookworm

FROM ${PYTHON} AS build
WORKDIR /src
COPY constraints.txt ./
COPY proto/ proto/
COPY runtime/ runtime/
COPY services/gateway/ services/gateway/
RUN python -m venv /opt/framecast \
 && /opt/framecast/bin/pip install --no-cache-dir --no-compile -c constraints.txt ./proto ./runtime ./services/gateway

FROM ${PYTHON} AS runtime
# A fixed non-root uid: compose and Kubernetes run the services that share memory as this user.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin framecast
COPY --from=build /opt/framecast /opt/framecast
COPY deploy/images/healthcheck.py /opt/framecast/healthcheck.py
ENV PATH=/opt/framecast/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FRAMECAST_LOG_FORMAT=json \
    FRAMECAST_GATEWAY_ADDR=0.0.0.0:8080
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s \
  CMD ["python", "/opt/framecast/healthcheck.py", "FRAMECAST_GATEWAY_ADDR"]
ENTRYPOINT ["framecast", "gateway"]
