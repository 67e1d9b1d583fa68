# RustStrom container image.
#
#   docker build -t rust-strom:0.1.0 .
#
# Stage 1 builds the release binary exactly as the README does
# (`cargo build --release`); stage 2 is distroless `cc` (glibc and libgcc,
# which ring and mimalloc link against; no shell, no package manager) and
# runs as the image's numeric non-root user. Both stages are Debian 12
# (bookworm), so the binary links against the glibc it runs with. The Rust
# version must be at least every locked crate's rust-version
# (scripts/chart-check checks it).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin rust-strom

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="rust-strom" \
      org.opencontainers.image.description="A Kubernetes ingress controller and load balancer written in Rust" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /src/target/release/rust-strom /usr/local/bin/rust-strom
# 65532 is distroless's `nonroot`; numeric so that Kubernetes can verify
# runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# 8000 HTTP, 8443 HTTPS, 9090 /metrics /healthz /readyz, 3000 the dashboard
# (a later release; nothing listens there yet).
EXPOSE 8000 8443 9090 3000
ENTRYPOINT ["/usr/local/bin/rust-strom"]
