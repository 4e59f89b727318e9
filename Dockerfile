# syntax=docker/dockerfile:1
#
# The STACK sidecar: one static binary on a distroless base, running as a
# non-root user. Build from the repository root:
#
#   docker build -t stack:dev .
#   docker run --rm -v stack-data:/var/lib/stack stack:dev init
#   docker run --rm -v stack-data:/var/lib/stack -p 127.0.0.1:8080:8080 stack:dev \
#       proxy --listen 0.0.0.0:8080 --admin-listen 0.0.0.0:9090
#
# The data directory is /var/lib/stack (STACK_HOME); mount a volume there.
# See docs/operations.md and examples/kubernetes/ for running it as a sidecar.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, so that editing the code does not invalidate them.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" -o /out/stack ./cmd/stack \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
# distroless "nonroot" is uid and gid 65532. The data directory is created
# owned by it, mode 0700, so a fresh named volume mounted there inherits
# both.
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /var/lib/stack
COPY --from=build /out/stack /stack
ENV STACK_HOME=/var/lib/stack
USER 65532:65532
VOLUME ["/var/lib/stack"]
# 8080: the proxy (HTTPS_PROXY); 9090: /metrics, /healthz, /readyz and the
# token-protected admin API.
EXPOSE 8080 9090
ENTRYPOINT ["/stack"]
CMD ["proxy"]
