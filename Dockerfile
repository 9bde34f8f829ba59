# syntax=docker/dockerfile:1

# docker build --build-arg VERSION=1.2.3 -t bulwark:1.2.3 .

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ENV CGO_ENABLED=0
# Every command under cmd/ but the benchmark harness, so that a new one
# ships without an edit here.
RUN set -eu; \
    mkdir -p /out; \
    for dir in cmd/*/; do \
        case "$dir" in cmd/bulwark-bench/) continue ;; esac; \
        go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/ "./$dir"; \
    done; \
    test -x /out/bulwark

FROM debian:bookworm-slim
# e2fsprogs and gdisk are for `bulwark demo`, which makes guest disks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates e2fsprogs gdisk \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --gid 10001 bulwark \
    && useradd --uid 10001 --gid bulwark --home-dir /var/lib/bulwark --no-create-home \
        --shell /usr/sbin/nologin bulwark \
    && install -d -o bulwark -g bulwark -m 0700 /var/lib/bulwark \
    && install -d -m 0755 /etc/bulwark
COPY --from=build /out/ /usr/local/bin/
COPY deploy/bulwark.yaml /etc/bulwark/bulwark.yaml
USER bulwark
VOLUME ["/var/lib/bulwark"]
EXPOSE 8443
ENTRYPOINT ["bulwark"]
CMD ["serve", "--config", "/etc/bulwark/bulwark.yaml"]
