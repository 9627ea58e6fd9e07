# syntax=docker/dockerfile:1
# The wxtoken image: a release build of the one binary in a distroless base with glibc, no shell,
# running as uid 65532. The web PKI roots are compiled into the binary, so the image needs no CA
# bundle. Build it with `podman build -t localhost/wxtoken:latest .` or `docker build` (this
# file is also found as `Dockerfile`). Where base images cannot be pulled, `scripts/image`
# assembles the same runtime image FROM scratch from a locally built binary; keep the runtime
# stage below and deploy/container/Containerfile.local alike (a test compares them).

# Debian 12 in both stages: the binary links against the glibc it is built with.
ARG RUST_VERSION=1.95
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directories are build caches: a rebuild after a source change takes
# only the crates that changed. The binary leaves the cache in the same step, without the debug
# sections the release profile keeps for profiling (90 of its 112 MB; symbols stay).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin wxtoken \
    && install -d -m 0755 /out/usr/local/bin \
    && strip --strip-debug -o /out/usr/local/bin/wxtoken target/release/wxtoken \
    && install -d -m 0700 /volume/data

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="wxtoken" \
      org.opencontainers.image.description="Central access_token server for WeChat" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /out/usr/local/bin/wxtoken /usr/local/bin/wxtoken
COPY deploy/container/wxtoken.toml /etc/wxtoken/wxtoken.toml
# The embedded store's directory, copied as an entry of /volume so that it gets the owner too:
# a new named volume takes this owner and mode.
COPY --from=build --chown=65532:65532 /volume/ /
# The binary runs with this image's libraries (exec form: there is no shell).
RUN ["/usr/local/bin/wxtoken", "--version"]
USER 65532:65532
# DL3064 reads TOKEN in the name as a secret; the value is the configuration file's path.
# hadolint ignore=DL3064
ENV WXTOKEN_CONFIG=/etc/wxtoken/wxtoken.toml
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/wxtoken", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/wxtoken"]
CMD ["serve"]
