#!/usr/bin/env bash
# make docker-test: the deployments of HOW_TO_USE.md, checked for real.
#
#  1. the Kubernetes manifests: strict decoding into k8s.io/api types,
#     `kubectl kustomize` of every overlay, the security contexts and
#     resources the docs claim (deploy/kubernetes/validate, its own module);
#  2. the image and the Docker Compose deployments, in a private dockerd
#     started here (own data root under a temporary directory,
#     --iptables=false, no default bridge, no IP forwarding change) and
#     removed at the end, even on failure (deploy/test, go test).
#
# Needs root on Debian; installs docker.io, docker-compose and tcpdump when
# missing. Bounded: about 2 minutes on a warm machine, 9 minutes at most.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PATH:/usr/local/go/bin"
GO=${GO:-go}
start=$SECONDS

if [ "$(id -u)" != 0 ]; then
  echo "docker-test: needs root (it starts its own dockerd)" >&2
  exit 1
fi
missing=""
for p in docker.io docker-compose tcpdump; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "docker-test: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # shellcheck disable=SC2086
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
fi
if ! command -v kubectl >/dev/null; then
  echo "docker-test: kubectl not found (it renders the kustomize overlays)" >&2
  exit 1
fi

# 1. Kubernetes manifests: no daemon needed.
(cd deploy/kubernetes/validate && timeout 300 "$GO" test -count=1 ./...)

# 2. A private dockerd.
T=$(mktemp -d /tmp/lightshark-docker-test.XXXXXX)
DOCKER=/usr/bin/docker # docker.io's client: BuildKit without the buildx plugin
export DOCKER_HOST="unix://$T/docker.sock"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" != 0 ] && [ -f "$T/dockerd.log" ]; then
    echo "docker-test: failed; the end of dockerd's log:" >&2
    tail -15 "$T/dockerd.log" >&2
  fi
  if [ -S "$T/docker.sock" ]; then
    ids=$("$DOCKER" ps -aq 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || "$DOCKER" rm -f -v $ids >/dev/null 2>&1 || true
    "$DOCKER" network prune -f >/dev/null 2>&1 || true
  fi
  if [ -f "$T/dockerd.pid" ]; then
    pid=$(cat "$T/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # containerd and its shims, started by this dockerd: their command lines
  # name this run's directory.
  for pid in $(pgrep -f -- "$T/" || true); do kill -9 "$pid" 2>/dev/null || true; done
  awk -v t="$T" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$T"
  echo "docker-test: done in $((SECONDS - start))s (exit $rc)"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

dockerd -H "$DOCKER_HOST" --data-root "$T/data" --exec-root "$T/exec" \
  --pidfile "$T/dockerd.pid" --iptables=false --ip-forward=false --bridge=none \
  >"$T/dockerd.log" 2>&1 &
for _ in $(seq 1 150); do
  "$DOCKER" info >/dev/null 2>&1 && break
  sleep 0.2
done
if ! "$DOCKER" info >/dev/null 2>&1; then
  echo "docker-test: dockerd did not start:" >&2
  tail -20 "$T/dockerd.log" >&2
  exit 1
fi

LIGHTSHARK_DOCKER_TEST=1 DOCKER="$DOCKER" COMPOSE=docker-compose \
  timeout 480 "$GO" test -count=1 -timeout 7m -v ./deploy/test/
