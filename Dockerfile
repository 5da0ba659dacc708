# syntax=docker/dockerfile:1
# fds-worker container image: build with the Rust toolchain, run on Debian slim as a non-root user.
# The image holds only the binary, the Avro schemas and the default config:
#   /usr/local/bin/fds-worker
#   /etc/fds-worker/config/fds-worker.toml   (the repository's config/fds-worker.toml)
#   /etc/fds-worker/schemas/*.avsc
# The working directory is /etc/fds-worker, so `fds-worker run` finds config/fds-worker.toml and
# the schema catalog's relative paths without flags. Mount another config over
# /etc/fds-worker/config/ (Kubernetes ConfigMap) or pass --config / FDS_CONFIG, and override keys
# with FDS_* environment variables.
#
#   docker build -t fds-worker .
#   docker run --rm fds-worker check-config --print

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# librdkafka is built from source (rdkafka's cmake-build feature) with OpenSSL and zlib; its
# 2.12 sources include curl/curl.h even when built without curl (see scripts/deps.sh).
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libssl-dev libsasl2-dev zlib1g-dev libcurl4-openssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY schemas ./schemas
COPY src ./src
# The test kit (crates/fds-testkit) is a workspace member, so Cargo reads it, but `-p fds-worker`
# compiles the product alone: the test kit is only the integration tests' dev-dependency, and
# nothing of it (redis-server launcher, mock broker, test PKI, demo, bench) is in the binary.
COPY crates ./crates
# Keep symbols (readable backtraces), drop DWARF (the image stays small).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fds-worker --bin fds-worker \
 && install -m 0755 target/release/fds-worker /usr/local/bin/fds-worker

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# libssl3: librdkafka's TLS; ca-certificates: the system trust store for Kafka TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 fds \
 && useradd --system --uid 10001 --gid fds --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin fds
COPY --from=build /usr/local/bin/fds-worker /usr/local/bin/fds-worker
COPY --chmod=0755 deploy/docker/healthcheck.sh /usr/local/bin/fds-healthcheck
COPY config/fds-worker.toml /etc/fds-worker/config/fds-worker.toml
COPY schemas/*.avsc /etc/fds-worker/schemas/
WORKDIR /etc/fds-worker
# In a container the metrics/health endpoint must listen beyond loopback (the file's default is
# 127.0.0.1:9464). JSON logs to stderr.
ENV FDS_METRICS__LISTEN=0.0.0.0:9464 \
    FDS_LOG__FORMAT=json
EXPOSE 9464
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/usr/local/bin/fds-healthcheck"]
ENTRYPOINT ["/usr/local/bin/fds-worker"]
CMD ["run"]
