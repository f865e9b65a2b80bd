#!/usr/bin/env bash
# make docker-test: build docker/Dockerfile.jetson and docker/Dockerfile for real with buildah (no
# Docker daemon needed), FROM a Debian base made here with debootstrap (nvcr.io and Docker Hub are
# out of reach), then run the checks inside the images:
#   x86 image:          attn-export cbam --opset 17 (export + ONNX Runtime validation) passes
#   Jetson-recipe image: attn-export doctor runs (built for x86 on the Debian base: same recipe)
#   both, once serving exists: attn-export serve answers tritonclient from outside with the golden
# Everything it makes lives under build/docker (the base tarball, the wheelhouse, buildah's vfs
# storage), so a rerun reuses the base; the images are rebuilt each run (vfs copies the whole
# rootfs per cached layer, so no layer cache) unless DOCKER_TEST_REUSE_IMAGES=1 (iterating on the
# checks). Needs root and apt (Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${DOCKER_TEST_DIR:-build/docker}
PY=${PYTHON:-python3}                        # a Python with attn-export, pip and tritonclient
CA=${DOCKER_TEST_CA:-/etc/ssl/certs/ca-certificates.crt}
BASE=localhost/attn-export-test-base:bookworm
JETSON=localhost/attn-export:jetson-recipe-test
X86=localhost/attn-export:x86-test
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
BUILDAH=(buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
T0=$SECONDS

step() { printf '\n== [%4ds] %s\n' "$((SECONDS - T0))" "$*"; }

ensure_tools() {
  local missing=()
  command -v buildah > /dev/null || missing+=(buildah)
  command -v debootstrap > /dev/null || missing+=(debootstrap)
  if ((${#missing[@]})); then
    step "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# A Debian bookworm rootfs with python3, pip and venv, committed as a local image: the stand-in
# for the nvcr.io bases (a real Jetson base adds TensorRT and CUDA; the recipe is the same).
make_base() {
  if "${BUILDAH[@]}" inspect --type image "$BASE" > /dev/null 2>&1; then
    step "base image $BASE: cached"; return
  fi
  if [[ ! -s $WORK/base.tar ]]; then
    step "debootstrap bookworm (python3, pip, venv) -> $WORK/base.tar"
    rm -rf "$WORK/rootfs.tmp"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
      bookworm "$WORK/rootfs.tmp" "$MIRROR" > "$WORK/debootstrap.log"
    rm -rf "$WORK/rootfs.tmp"/var/cache/apt/archives/*.deb "$WORK/rootfs.tmp"/var/lib/apt/lists/*
    tar -C "$WORK/rootfs.tmp" -cf "$WORK/base.tar.tmp" . && mv "$WORK/base.tar.tmp" "$WORK/base.tar"
    rm -rf "$WORK/rootfs.tmp"
  fi
  step "committing $BASE"
  local ctr
  ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$ctr" "$WORK/base.tar" / > /dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$ctr"
  "${BUILDAH[@]}" commit --rm -q "$ctr" "$BASE" > /dev/null
}

# torch's CPU wheel from the host's pip (its own index is out of reach here), mounted at /wheelhouse.
make_wheelhouse() {
  if ! ls "$WORK"/wheelhouse/torch-2.13.0* > /dev/null 2>&1; then
    step "pip download torch==2.13.0 (CPU) -> $WORK/wheelhouse"
    "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$WORK/wheelhouse" torch==2.13.0
  fi
}

build() {  # build IMAGE DOCKERFILE [extra buildah bud args]
  local image=$1 dockerfile=$2; shift 2
  if [[ -n ${DOCKER_TEST_REUSE_IMAGES:-} ]] && "${BUILDAH[@]}" inspect --type image "$image" > /dev/null 2>&1; then
    step "$image: reused (DOCKER_TEST_REUSE_IMAGES is set)"; return
  fi
  step "buildah bud -f $dockerfile -> $image"
  "${BUILDAH[@]}" bud --isolation chroot --format docker -q -f "$dockerfile" \
    --build-arg BASE="$BASE" --secret id=pip_cert,src="$CA" -t "$image" "$@" . > /dev/null
}

in_image() {  # in_image IMAGE [buildah run options] -- COMMAND...: in a fresh container, removed after
  local image=$1 ctr rc=0 opts=(); shift
  while [[ $1 != -- ]]; do opts+=("$1"); shift; done; shift
  ctr=$("${BUILDAH[@]}" from -q "$image")
  "${BUILDAH[@]}" run --isolation chroot "${opts[@]}" "$ctr" -- "$@" || rc=$?
  "${BUILDAH[@]}" rm "$ctr" > /dev/null
  return $rc
}

free_ports() {  # three free TCP ports on 127.0.0.1
  "$PY" -c 'import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])'
}

check_x86() {  # the issue's first command, in the workstation image, onto a mounted folder
  step "x86 image: attn-export cbam --opset 17"
  in_image "$X86" -v "$OUT:/out" -- attn-export cbam --opset 17 --output-dir /out/cbam
}

check_jetson() {  # the torch-free device recipe: doctor, and the x86 export validated here
  step "Jetson-recipe image: attn-export doctor"
  in_image "$JETSON" -- attn-export doctor
  step "Jetson-recipe image: attn-export doctor --for serve"
  in_image "$JETSON" -- attn-export doctor --for serve | tail -1
  step "Jetson-recipe image: validate the x86 image's export against its golden file"
  in_image "$JETSON" -v "$OUT:/out" -- attn-export validate /out/cbam/cbam.onnx \
    --golden /out/cbam/cbam.golden.npz
}

has_verb() {  # has_verb IMAGE VERB: the verb's own help (an unknown word is read as a block name)
  # grep reads it all (no -q): under pipefail an early exit would fail the writer with SIGPIPE
  in_image "$1" -- attn-export "$2" --help 2> /dev/null | grep "^Usage: attn-export $2 " > /dev/null
}

# Serving lands in its own change; until `attn-export serve --help` works in the image, say so.
check_serve() {
  local verb
  for verb in serve repo; do
    if ! has_verb "$JETSON" "$verb"; then
      step "SKIPPED the serve check: \`attn-export $verb --help\` does not work in the image"
      return
    fi
  done
  step "serve: export cbam (dynamic batch) in the x86 image, write a repository in the Jetson image"
  in_image "$X86" -v "$OUT:/out" -- attn-export cbam --opset 17 --dynamic batch \
    --output-dir /out/cbam-batch > /dev/null
  rm -rf "$OUT/repo"
  in_image "$JETSON" -v "$OUT:/out" -- attn-export repo /out/cbam-batch --out /out/repo --prefer onnx
  local http grpc metrics rc=0
  read -r http grpc metrics < <(free_ports)
  step "serve: attn-export serve in the Jetson-recipe image on 127.0.0.1:$http (host network)"
  # chroot isolation keeps the host's network namespace: the server binds the host's loopback.
  setsid "${BUILDAH[@]}" run --isolation chroot --network host -v "$OUT:/out" \
    "$("${BUILDAH[@]}" from -q "$JETSON")" -- attn-export serve /out/repo --host 127.0.0.1 \
    --http-port "$http" --grpc-port "$grpc" --metrics-port "$metrics" > "$WORK/serve.log" 2>&1 &
  SERVE_PGID=$!  # setsid: the server, buildah and its chroot runtime share this process group
  PYTHONPATH=$PWD "$PY" tools/docker_serve_check.py --http "127.0.0.1:$http" --model cbam \
    --golden "$OUT/cbam-batch/cbam.golden.npz" || rc=$?
  stop_server
  "${BUILDAH[@]}" rm --all > /dev/null
  if ((rc)); then tail -20 "$WORK/serve.log"; return "$rc"; fi
}

SERVE_PGID=
stop_server() {  # also on any exit, so no server outlives this script
  if [[ -n $SERVE_PGID ]]; then
    kill -- "-$SERVE_PGID" 2> /dev/null || true
    wait "$SERVE_PGID" 2> /dev/null || true
    SERVE_PGID=
  fi
}
trap stop_server EXIT

costs() {
  step "cost: $((SECONDS - T0)) s in all; disk under $WORK: $(du -sh "$WORK" | cut -f1)"
  "${BUILDAH[@]}" images
}

main() {
  ensure_tools
  make_base
  make_wheelhouse
  OUT=$WORK/out
  rm -rf "$OUT" && mkdir -p "$OUT" && chmod 0777 "$OUT"  # the images run as uid 1000
  build "$JETSON" docker/Dockerfile.jetson
  build "$X86" docker/Dockerfile --build-arg TORCH_INDEX= -v "$WORK/wheelhouse:/wheelhouse:ro"
  "${BUILDAH[@]}" rmi --prune > /dev/null  # the wheel stages' images
  check_x86
  check_jetson
  check_serve
  costs
  step "docker-test passed"
}

main "$@"
