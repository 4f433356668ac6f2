# LightShark-mini. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
export PATH := $(PATH):/usr/local/go/bin

MODULE  := github.com/lightshark-dev/lightshark-mini
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X $(MODULE)/pkg/version.Version=$(VERSION) -X $(MODULE)/pkg/version.Commit=$(COMMIT)
BIN     := bin

# Debian packages the tests use (real oracles, real traffic, and chromium for
# the dashboard's browser tests).
TEST_PKGS := tshark tcpdump tcpreplay iperf3 iproute2 iputils-ping ethtool \
             dnsmasq-base dnsutils libcap2-bin curl python3 gcc libc6-dev wrk chromium
FUZZTIME ?= 30s

.PHONY: all build run test test-deps bench fuzz lint check-deps tidy help clean e2e docker-test

# make run: capture on the default interface, history in SQLite, API on :3000.
RUN_DIR ?= /tmp/lightshark-run
DB_PATH ?= $(RUN_DIR)/traffic.db
PORT    ?= 3000

all: build

help:
	@echo "build       static binaries into $(BIN)/ (CGO_ENABLED=0)"
	@echo "run         build, then capture on the default interface into SQLite and serve the API on :$(PORT) (root)"
	@echo "test        install test tools when missing (Debian), go test -race ./... (e2e included), then docker-test"
	@echo "e2e         system tests: the real binaries in network namespaces, real traffic, faults (root)"
	@echo "bench       benchmarks side by side with tcpdump/tshark (see README)"
	@echo "fuzz        each fuzz target for FUZZTIME (default $(FUZZTIME))"
	@echo "lint        gofmt and go vet"
	@echo "check-deps  the capturer links no SQLite/HTTP, the API server no gopacket"
	@echo "docker-test the image and the deployments of deploy/ in real containers, in a private dockerd (root)"

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/lightshark-capturer ./cmd/capturer
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/lightshark-apiserver ./cmd/apiserver
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/lightshark-mini ./cmd/lightshark-mini

# lightshark-mini (as root) runs the API server as uid 65532 with no
# capability and the capturer as uid 65534 with CAP_NET_RAW alone, which it
# drops once its socket is open. ARGS adds flags, e.g. ARGS='-i eth0'.
run: build
	@install -d -m 0755 -o 65532 -g 65532 $(RUN_DIR)
	./$(BIN)/lightshark-mini --db-path $(DB_PATH) --socket $(RUN_DIR)/run/ipc.sock -p $(PORT) $(ARGS)

# Installs what the tests need when it is missing (Debian, as root), so a
# fresh machine and CI run the same command.
test-deps:
	@missing=""; for p in $(TEST_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root or install them)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get -o DPkg::Lock::Timeout=600 update -qq && \
	  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(GO) mod download

# Everything: unit, component and system tests (e2e/, in network
# namespaces), then the deployments in real containers (docker-test).
test: test-deps lint check-deps build
	$(GO) test -race -count=1 -timeout 25m ./...
	$(MAKE) docker-test

# The system tests (e2e/): they build the binaries themselves and skip,
# with the reason, unless run as root with the tools of TEST_PKGS.
e2e:
	$(GO) test -count=1 -timeout 12m ./e2e/...

bench: test-deps build
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./pkg/decode ./pkg/flow ./pkg/capture ./ipc
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench

fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for t in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) build ./...

# The capturer must not link SQLite or HTTP (nor gopacket/layers, whose
# tables cost ~1 MiB of RSS); the API server must not link packet parsing
# (../shared/LAYOUT.md).
check-deps:
	@bad=$$($(GO) list -deps ./cmd/capturer | grep -E 'sqlite|^net/http$$|gorilla/websocket|gopacket/layers' || true); \
	if [ -n "$$bad" ]; then echo "capturer links: $$bad"; exit 1; fi
	@bad=$$($(GO) list -deps ./cmd/apiserver | grep -E 'gopacket|/pkg/(capture|decode|flow|capfilter)$$' || true); \
	if [ -n "$$bad" ]; then echo "apiserver links: $$bad"; exit 1; fi
	@echo "check-deps: ok"

# The Dockerfile, the Docker Compose deployments and the Kubernetes manifests
# (deploy/README.md), checked for real: installs Docker when missing, starts
# its own dockerd under a temporary directory and removes it at the end.
docker-test:
	GO=$(GO) bash deploy/test/docker-test.sh

tidy:
	$(GO) mod tidy
	@git diff --exit-code go.mod go.sum

clean:
	rm -rf $(BIN)
