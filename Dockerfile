# syntax=docker/dockerfile:1
# The bus broker as a container image: build the `bus` binary, then copy it into a small
# runtime image that runs it as a non-root user. The build command is the README's release
# build (`cargo build --release --locked -p bus-cli`). Not built in CI: the machines CI runs
# on reach package registries but no container registry (see README, "Docker").

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p bus-cli \
 && install -D -m 0755 target/release/bus /out/bus

FROM debian:bookworm-slim
# A fixed, unprivileged user owning nothing but the data directory.
RUN groupadd --system --gid 10001 bus \
 && useradd --system --uid 10001 --gid bus --home-dir /data --shell /usr/sbin/nologin bus \
 && mkdir -p /data /etc/bus \
 && chown bus:bus /data
COPY --from=build /out/bus /usr/local/bin/bus
USER bus:bus
# Inside the container the broker listens on every interface: publishing the port is what
# exposes it, and docker-compose.yml publishes it on 127.0.0.1 only. Beyond loopback the
# broker refuses to start without --auth (BUS_AUTH) or an explicit BUS_ALLOW_ANONYMOUS.
ENV BUS_ADDR=0.0.0.0:2021 \
    BUS_DATA=/data
VOLUME ["/data"]
EXPOSE 2021
# `bus health` asks /healthz (no credential needed); the image has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bus", "--url", "http://127.0.0.1:2021", "health"]
# SIGTERM (docker stop) shuts the broker down gracefully: streams get `event: shutdown`,
# pending writes are synced.
STOPSIGNAL SIGTERM
ENTRYPOINT ["bus"]
CMD ["server"]
