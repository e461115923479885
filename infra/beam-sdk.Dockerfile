# The Beam worker image: Beam's own Python SDK container with Sluice installed, for the
# workers of a distributed Beam runner (Dataflow, Flink, Spark). Pass it as
#   --sdk_container_image=REGISTRY/sluice-beam:VERSION
# in the pipeline's beam_pipeline_args. Its base must match the Beam and Python versions
# Sluice pins (tests/infra/test_infra.py checks it against the installed Beam).
#   docker build -f infra/beam-sdk.Dockerfile -t REGISTRY/sluice-beam:VERSION .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
# The folders pyproject.toml maps into the one package, sluice.
COPY sluice ./sluice
COPY components ./components
COPY orchestration ./orchestration
COPY pipelines ./pipelines
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM apache/beam_python3.11_sdk:2.77.0
ENV PYTHONDONTWRITEBYTECODE=1 TF_CPP_MIN_LOG_LEVEL=2 PIP_NO_CACHE_DIR=1
COPY --from=build /wheels /wheels
# Sluice's dependencies resolve against the Beam already in the image (the same version).
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# The base image's ENTRYPOINT (/opt/apache/beam/boot, the SDK harness) stays as it is.
