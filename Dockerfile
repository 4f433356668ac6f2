# One image holding the three static binaries (CGO_ENABLED=0) of
# LightShark-mini, on a base with no shell and no package manager, running as
# a non-root user (65532) by default. Needs BuildKit (the default builder
# since Docker 23): only the stages the final one uses are built.
#
#   docker build -t lightshark-mini .
#
# The same image serves the three deployments of HOW_TO_USE.md § Deployments: the
# default entrypoint is the all-in-one lightshark-mini; the sidecar
# containers override it with lightshark-capturer or lightshark-apiserver.
# There is no HEALTHCHECK: orchestrators probe GET /api/health.
#
# BINARIES names the stage or image that holds the build output under /out
# (the default is the build stage below). CI and the offline container test
# (deploy/test) build the binaries once on the host with `make build` and pass
# an image holding them, so the final stage is built exactly as written here.

ARG GO_IMAGE=golang:1.26
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot
ARG BINARIES=build

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN make build VERSION="$VERSION" COMMIT="$COMMIT" \
 && install -d -m 0755 /out/usr/local/bin /out/run /out/var/lib \
 && install -m 0755 bin/lightshark-capturer bin/lightshark-apiserver bin/lightshark-mini /out/usr/local/bin/ \
 && install -d -m 0755 -o 65532 -g 65532 /out/run/lightshark \
 && install -d -m 0750 -o 65532 -g 65532 /out/var/lib/lightshark

FROM ${BINARIES} AS binaries

FROM ${BASE_IMAGE}
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="lightshark-mini" \
      org.opencontainers.image.description="Network traffic analyzer sidecar: exact bidirectional flows, SQLite history, REST API, Prometheus metrics" \
      org.opencontainers.image.licenses="NOASSERTION" \
      org.opencontainers.image.source="https://github.com/lightshark-dev/lightshark-mini" \
      org.opencontainers.image.documentation="https://github.com/lightshark-dev/lightshark-mini/blob/main/HOW_TO_USE.md#deployments" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
# /out holds the binaries and the socket and database directories, which
# belong to the API server's user (65532) so that a fresh Docker named volume
# mounted there starts owned by it.
COPY --from=binaries /out/ /
USER 65532:65532
WORKDIR /var/lib/lightshark
ENTRYPOINT ["/usr/local/bin/lightshark-mini"]
