# syntax=docker/dockerfile:1
# framecast capture: built from the repository root (`docker build -f deploy/images/capture.Dockerfile .`).
# Only this service's distributions and their dependencies, at the versions of constraints.txt.
ARG PYTHON=python:3.11-slim-bookworm

FROM ${PYTHON} AS build
WORKDIR /src
COPY constraints.txt ./
COPY proto/ proto/
COPY runtime/ runtime/
COPY frames/ frames/
COPY services/capture/ services/capture/
RUN python -m venv /opt/framecast \
 && /opt/framecast/bin/pip install --no-cache-dir --no-compile -c constraints.txt ./proto ./runtime ./frames ./services/capture

FROM ${PYTHON} AS runtime
# A fixed non-root uid: compose and Kubernetes run the services that share memory as this user.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin framecast
COPY --from=build /opt/framecast /opt/framecast
COPY deploy/images/healthcheck.py /opt/framecast/healthcheck.py
# FFmpeg (imageio-ffmpeg's binary) is GPLv3: its notice travels with the image.
COPY deploy/images/FFMPEG-NOTICE.txt /usr/share/doc/framecast/FFMPEG-NOTICE.txt
ENV PATH=/opt/framecast/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FRAMECAST_LOG_FORMAT=json \
    FRAMECAST_HEALTH_ADDR=0.0.0.0:9090
USER 10001
EXPOSE 9090
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s \
  CMD ["python", "/opt/framecast/healthcheck.py", "FRAMECAST_HEALTH_ADDR"]
ENTRYPOINT ["framecast", "capture"]
