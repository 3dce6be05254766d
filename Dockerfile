# The gateway's container image: `docker build -t edge-gateway .`
# README.md, Deployment, says how to run it (docker-compose.yml, deploy/k8s).
#
# Two stages on Debian 12, the project's only platform: the build stage
# installs the build dependencies (the subset of tools/setup.sh's PACKAGES
# that edge_gateway and edge-client need) and builds those two targets; the
# runtime stage installs only the shared libraries they link (checked
# against `ldd` of the binaries by the deploy.manifests test) and runs as an
# unprivileged user.

FROM debian:12 AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends \
      build-essential cmake pkg-config \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libdnnl-dev ocl-icd-opencl-dev \
      prometheus-cpp-dev libabsl-dev libssl-dev \
      libgtest-dev libgmock-dev \
      libturbojpeg0-dev libspng-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The whole tree configures (CMakeLists.txt finds GTest for tests/); only the
# two shipped binaries are built.
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
 && cmake --build /build -j"$(nproc)" --target edge_gateway edge-client

FROM debian:12
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y -q --no-install-recommends \
      libabsl20220623 libc-ares2 libcivetweb1 libdnnl2 libgomp1 \
      libgrpc++1.51 libgrpc29 libprometheus-cpp-core1.0 \
      libprometheus-cpp-pull1.0 libprotobuf32 libre2-9 libspng0 libssl3 \
      libstdc++6 libturbojpeg0 ocl-icd-libopencl1 zlib1g \
 && rm -rf /var/lib/apt/lists/*
# A fixed uid, so Kubernetes' runAsNonRoot can check it and bind-mounted
# model files can be made readable to it (deploy/k8s/base/deployment.yaml).
RUN groupadd --system --gid 10001 edge \
 && useradd --system --uid 10001 --gid edge --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin edge
COPY --from=build /build/server/edge_gateway /build/client/edge-client \
     /usr/local/bin/
COPY deploy/docker/healthcheck.sh /usr/local/bin/edge-gateway-healthcheck

# Configuration through EDGE_GATEWAY_<FIELD> (README.md, Configuration):
# serve every interface of the container, read the model from the volume.
ENV EDGE_GATEWAY_MODEL_DIR=/models \
    EDGE_GATEWAY_LISTEN_ADDRESS=0.0.0.0:50051 \
    EDGE_GATEWAY_METRICS_ADDRESS=0.0.0.0:9464
# An exported model directory (docs/model-format.md), mounted read-only.
VOLUME /models
# gRPC, and Prometheus /metrics.
EXPOSE 50051 9464
USER 10001:10001
# grpc.health.v1 through edge-client: SERVING only once the model is loaded
# and warmed up, so allow a minute for that before failures count.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["edge-gateway-healthcheck"]
# SIGTERM (docker stop) drains: give it more than drain_timeout_ms (10 s),
# e.g. `docker stop -t 30` or compose's stop_grace_period.
STOPSIGNAL SIGTERM
ENTRYPOINT ["edge_gateway"]
