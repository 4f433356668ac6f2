# One image holding the three static binaries (CGO_ENABLED=0), on a base
# with no shell and no package manager, running as a non-root user.
# Deployments and their tests arrive with the deployment work (deploy/).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
RUN make build VERSION=$VERSION COMMIT=$COMMIT

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="lightshark-mini" \
      org.opencontainers.image.description="Network traffic analyzer sidecar: exact bidirectional flows, SQLite history, REST API" \
      org.opencontainers.image.licenses="BSD-3-Clause"
COPY --from=build /src/bin/lightshark-capturer /src/bin/lightshark-apiserver /src/bin/lightshark-mini /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/lightshark-mini"]
