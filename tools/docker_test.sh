#!/usr/bin/env bash
# make docker-test: build docker/Dockerfile.jetson (JetPack 7.2, the default, and JetPack 6 with
# --build-arg JETPACK=6) and docker/Dockerfile for real with buildah (no Docker daemon needed),
# FROM Debian bases made here with debootstrap (nvcr.io, Docker Hub and Ubuntu's archive are out of
# reach), then run each image the way `docker run` does and check it:
#   - own PID, mount and network namespaces (unshare / ip netns), PID 1 the image's ENTRYPOINT
#     (tini), the image's ENV and WORKDIR, a non-root uid the image does not know with the video
#     group (docker run --user U:G --group-add video), a host-owned folder bound at /data;
#   - x86: export cbam into that folder; a root-owned folder gives one clean error line;
#   - Jetson images: doctor, `doctor --for build` blocked by nothing but the GPU (and, on the
#     JetPack 7 stand-in, TensorRT itself: see below), every module the TensorRT verbs import,
#     validate of the x86 export;
#   - every image: serve its default command in a network namespace of its own, reached from
#     the host through a veth pair (link-local 169.254.77.0/30) with tritonclient; SIGTERM to the
#     container's PID 1 during model load and while serving ends it promptly.
# Stand-ins: JetPack 7.2's Python is 3.12 and JetPack 6's 3.10; Debian has neither (bookworm 3.11,
# trixie 3.13), and no other interpreter source is reachable, so the JetPack 7 recipe builds on
# trixie (3.13) and the JetPack 6 recipe on bookworm (3.11): the nearest Pythons. Their
# requirement files are proven to resolve for 3.12 / 3.10 aarch64 by tests/docker/test_requirements.py.
# TensorRT: a stand-in base has none; the JetPack 6 image gets the real TensorRT 10.3 Python
# bindings for cp311 with the C stub of their libraries (build/trt-bindings, made by `make`), so
# there `doctor --for build` must be blocked by the GPU alone; no cp313 bindings exist for the
# JetPack 7 stand-in, so there TensorRT is also allowed to block.
# Measured: 356 s from nothing (both debootstraps included, torch's wheel from pip's cache), ~7 GB
# under build/docker, on 2 shared cores at load ~3.5; the checks alone (DOCKER_TEST_REUSE_IMAGES=1)
# about 70 s. To be re-measured on an idle machine.
# Everything lives under build/docker (base tarballs, wheelhouse, buildah's vfs storage); images
# are rebuilt each run unless DOCKER_TEST_REUSE_IMAGES=1 (iterating on the checks). Needs root
# and apt (Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${DOCKER_TEST_DIR:-build/docker}
PY=${PYTHON:-python3}                        # a Python with attn-export, pip and tritonclient
CA=${DOCKER_TEST_CA:-/etc/ssl/certs/ca-certificates.crt}
TRT_BINDINGS=${ATTN_EXPORT_TRT_BINDINGS:-build/trt-bindings}
BOOKWORM=localhost/attn-export-test-base:bookworm
TRIXIE=localhost/attn-export-test-base:trixie
JP7=localhost/attn-export:jp7-test
JP6=localhost/attn-export:jp6-test
X86=localhost/attn-export:x86-test
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
HOST_UID=4242                                # a developer's uid, unknown to the images
NETNS=attn-export-test
HOST_IP=169.254.77.1 CTR_IP=169.254.77.2     # link-local, on a veth pair made and removed here
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
BUILDAH=(buildah --root "$WORK/storage" --runroot "$WORK/run" --storage-driver vfs)
T0=$SECONDS

step() { printf '\n== [%4ds] %s\n' "$((SECONDS - T0))" "$*"; }
die() { printf 'docker-test FAILED: %s\n' "$*" >&2; exit 1; }

ensure_tools() {
  local missing=()
  command -v buildah > /dev/null || missing+=(buildah)
  command -v debootstrap > /dev/null || missing+=(debootstrap)
  command -v ip > /dev/null || missing+=(iproute2)
  if ((${#missing[@]})); then
    step "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# A Debian rootfs with python3, pip, venv and tini, committed as a local image: the stand-in for
# the NVIDIA bases (a real Jetson base adds TensorRT and CUDA; the recipe is the same).
make_base() {  # make_base SUITE IMAGE
  local suite=$1 image=$2 tar=$WORK/base-$1.tar
  if "${BUILDAH[@]}" inspect --type image "$image" > /dev/null 2>&1; then
    step "base image $image: cached"; return
  fi
  if [[ ! -s $tar ]]; then
    step "debootstrap $suite (python3, pip, venv, tini) -> $tar"
    rm -rf "$WORK/rootfs-$suite.tmp"
    debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates,tini \
      "$suite" "$WORK/rootfs-$suite.tmp" "$MIRROR" > "$WORK/debootstrap-$suite.log"
    rm -rf "$WORK/rootfs-$suite.tmp"/var/cache/apt/archives/*.deb "$WORK/rootfs-$suite.tmp"/var/lib/apt/lists/*
    tar -C "$WORK/rootfs-$suite.tmp" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar"
    rm -rf "$WORK/rootfs-$suite.tmp"
  fi
  step "committing $image"
  local ctr
  ctr=$("${BUILDAH[@]}" from scratch)
  "${BUILDAH[@]}" add "$ctr" "$tar" / > /dev/null
  "${BUILDAH[@]}" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash "$ctr"
  "${BUILDAH[@]}" commit --rm -q "$ctr" "$image" > /dev/null
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
  step "buildah bud -f $dockerfile $* -> $image"
  "${BUILDAH[@]}" bud --isolation chroot --format docker -q -f "$dockerfile" \
    --secret id=pip_cert,src="$CA" -t "$image" "$@" . > /dev/null
}

# -- docker run, made of namespaces -------------------------------------------------------------

CTRS=()
declare -A ROOTS
# ctr_root IMAGE: ROOTS[IMAGE] is the root filesystem of one container of IMAGE, made on first use
# and shared by every run of that image here (vfs copies the whole image per container: one copy, not twenty).
ctr_root() {
  if [[ -z ${ROOTS[$1]:-} ]]; then
    local c
    c=$("${BUILDAH[@]}" from -q "$1"); CTRS+=("$c")
    ROOTS[$1]=$("${BUILDAH[@]}" mount "$c")
  fi
}
# ctr_command IMAGE ENTRYPOINT [ARGS...]: `env -i -C WORKDIR ENV... ENTRYPOINT (ARGS or CMD)` as
# one shell-quoted line, from the image's own config ("-" for ENTRYPOINT: the image's).
ctr_command() {
  "${BUILDAH[@]}" inspect --type image "$1" | "$PY" -c '
import json, os, shlex, sys
config, entry, args = json.load(sys.stdin)["OCIv1"]["config"], sys.argv[1], sys.argv[2:]
entrypoint = config.get("Entrypoint") or [] if entry == "-" else [entry]
command = entrypoint + (args or (config.get("Cmd") or [] if entry == "-" else []))
extra = [e for e in os.environ.get("CTR_EXTRA_ENV", "").split("\n") if e]
print(shlex.join(["env", "-i", "-C", config.get("WorkingDir") or "/", *config.get("Env", []), *extra,
                  *command]))
' "${@:2}"
}

# ctr [-d] [--net NETNS] [--user U:G] [-v HOST:DIR]... [-e K=V]... [--entrypoint X] IMAGE [ARGS...]
# Like docker run: PID 1 of its own PID namespace is the image's ENTRYPOINT, with its own mount
# namespace (fresh /proc, the volumes) and network namespace (NETNS, else one with only lo), as
# uid U:G (default the image's 1000:1000) plus the video group. -d: in the background, CTR_PID is
# the `unshare` whose only child is the container's PID 1.
ctr() {
  local detach='' netns='' user=1000:1000 entry=- vols=() envs=()
  while [[ $1 == -* ]]; do
    case $1 in
      -d) detach=1; shift ;;
      --net) netns=$2; shift 2 ;;
      --user) user=$2; shift 2 ;;
      -v) vols+=("$2"); shift 2 ;;
      -e) envs+=("$2"); shift 2 ;;
      --entrypoint) entry=$2; shift 2 ;;
      *) die "ctr: unknown option $1" ;;
    esac
  done
  local image=$1; shift
  local root video line setup v
  ctr_root "$image"
  root=${ROOTS[$image]}
  video=$(awk -F: '$1 == "video" {print $3}' "$root/etc/group")
  line=$(CTR_EXTRA_ENV=$(printf '%s\n' "${envs[@]}") ctr_command "$image" "$entry" "$@")
  setup="mount -t proc proc $root/proc && mount --rbind /dev $root/dev"
  [[ -n $netns ]] || setup+=" && ip link set lo up"
  for v in "${vols[@]}"; do
    setup+=" && mkdir -p $root${v#*:} && mount --bind ${v%%:*} $root${v#*:}"
  done
  local cmd=(unshare --pid --mount --fork --propagation private)
  if [[ -n $netns ]]; then cmd=(ip netns exec "$netns" "${cmd[@]}"); else cmd+=(--net); fi
  cmd+=(sh -c "$setup && exec chroot --userspec=$user --groups=$video $root $line")
  if [[ -n $detach ]]; then
    "${cmd[@]}" > "$WORK/ctr.log" 2>&1 &
    CTR_PID=$!
  else
    "${cmd[@]}"
  fi
}

ctr_pid1() {  # the host pid of the container's PID 1 (the only child of its unshare)
  local kids
  for _ in $(seq 50); do
    kids=$(cat "/proc/$CTR_PID/task/$CTR_PID/children" 2> /dev/null || true)
    [[ -n $kids ]] && { echo "${kids%% *}"; return; }
    sleep 0.1
  done
  die "no PID 1 under unshare $CTR_PID"
}

alive() {  # alive PID: running (not gone, not a zombie waiting for us)
  local state
  state=$(cut -d' ' -f3 "/proc/$1/stat" 2> /dev/null) || return 1
  [[ $state != Z ]]
}

# stop_ctr SECONDS: docker stop: SIGTERM to PID 1, SIGKILL after SECONDS; sets STOP_RC, STOP_SECS
stop_ctr() {
  local limit=$1 pid1 t0=$SECONDS
  pid1=$(ctr_pid1)
  kill -TERM "$pid1"
  for _ in $(seq $((limit * 10))); do
    alive "$CTR_PID" || break
    sleep 0.1
  done
  if alive "$CTR_PID"; then kill -KILL "$pid1" 2> /dev/null || true; fi
  STOP_RC=0
  wait "$CTR_PID" || STOP_RC=$?
  STOP_SECS=$((SECONDS - t0))
  CTR_PID=
}

net_cleanup() {
  ip netns del "$NETNS" 2> /dev/null || true
  ip link del attn-test-h 2> /dev/null || true
}

cleanup() {
  if [[ -n ${CTR_PID:-} ]]; then kill -KILL "$CTR_PID" 2> /dev/null || true; fi
  net_cleanup
  local c
  for c in "${CTRS[@]}"; do "${BUILDAH[@]}" rm "$c" > /dev/null 2>&1 || true; done
}
trap cleanup EXIT

make_netns() {  # the container's network: a veth pair, 169.254.77.1 here, .2 inside
  net_cleanup
  ip netns add "$NETNS"
  ip link add attn-test-h type veth peer name attn-test-c
  ip link set attn-test-c netns "$NETNS"
  ip addr add "$HOST_IP/30" dev attn-test-h && ip link set attn-test-h up
  ip netns exec "$NETNS" sh -c "ip addr add $CTR_IP/30 dev attn-test-c && ip link set attn-test-c up \
    && ip link set lo up"
}

# -- the checks ---------------------------------------------------------------------------------

DATA=  # a host folder owned by HOST_UID, bound at /data in every run
check_x86() {
  step "x86 image as uid $HOST_UID (unknown to it) with a host-owned /data: export cbam"
  ctr --user "$HOST_UID:$HOST_UID" -v "$DATA:/data" "$X86" cbam --opset 17 --dynamic batch \
    --output-dir /data/cbam > /dev/null
  [[ $(stat -c %u "$DATA/cbam/cbam.onnx") == "$HOST_UID" ]] || die "export not owned by $HOST_UID"
  step "x86 image: doctor, and validate of that export"
  ctr --user "$HOST_UID:$HOST_UID" "$X86" doctor | tail -3
  ctr --user "$HOST_UID:$HOST_UID" -v "$DATA:/data" "$X86" validate /data/cbam/cbam.onnx \
    --golden /data/cbam/cbam.golden.npz | tail -1
  step "x86 image: a root-owned folder (what -v makes of a missing host folder) -> one error line"
  local rootowned=$WORK/rootowned err rc=0
  rm -rf "$rootowned" && mkdir -m 0755 "$rootowned"
  err=$(ctr --user "$HOST_UID:$HOST_UID" -v "$rootowned:/data" "$X86" cbam --opset 17 \
    --output-dir /data/cbam 2>&1 > /dev/null) || rc=$?
  printf '%s\n' "$err"
  [[ $rc == 1 && $(wc -l <<< "$err") == 1 && $err == error:*/data/cbam* ]] \
    || die "expected one 'error: ... /data/cbam ...' line and exit 1, got exit $rc"
}

# check_jetson IMAGE NAME BLOCKING_ALLOWED [ctr options for TensorRT]...
check_jetson() {
  local image=$1 name=$2 allowed=$3; shift 3
  local trt=("$@") json
  step "$name: attn-export doctor (uid $HOST_UID, video group)"
  ctr --user "$HOST_UID:$HOST_UID" "${trt[@]}" "$image" doctor
  step "$name: doctor --for build is blocked by nothing but: $allowed"
  json=$(ctr --user "$HOST_UID:$HOST_UID" "${trt[@]}" "$image" doctor --for build --json || true)
  "$PY" -c 'import json, sys
blocking = set(json.loads(sys.argv[1])["roles"]["build"]["blocking"])
allowed = set(sys.argv[2].split(","))
print("blocking:", sorted(blocking))
sys.exit(0 if blocking <= allowed else f"blocked by {sorted(blocking - allowed)} too")' "$json" "$allowed"
  step "$name: every module the TensorRT verbs import"
  local require=()
  ((${#trt[@]})) && require=(--require-tensorrt)
  ctr --user "$HOST_UID:$HOST_UID" "${trt[@]}" -v "$PWD/tools:/opt/attn-tools" --entrypoint python3 \
    "$image" /opt/attn-tools/docker_trt_imports.py "${require[@]}"
  step "$name: validate the x86 image's export against its golden file"
  ctr --user "$HOST_UID:$HOST_UID" -v "$DATA:/data" "$image" validate /data/cbam/cbam.onnx \
    --golden /data/cbam/cbam.golden.npz | tail -2
}

check_serve() {  # check_serve IMAGE NAME: the image's own CMD in its own network namespace
  local image=$1 name=$2 status
  step "$name: SIGTERM to PID 1 while the models load (docker stop during start-up)"
  ctr -d --net "$NETNS" --user "$HOST_UID:$HOST_UID" -v "$DATA/repo:/models" "$image"
  # loading: PID 1's child (attn-export) has mapped onnxruntime, and has not said "serving" yet
  local pid1 child='' loading=''
  pid1=$(ctr_pid1)
  for _ in $(seq 400); do
    child=$(cut -d' ' -f1 "/proc/$pid1/task/$pid1/children" 2> /dev/null || true)
    if [[ -n $child ]] && grep -q onnxruntime "/proc/$child/maps" 2> /dev/null; then
      loading=1; break
    fi
    sleep 0.05
  done
  if [[ -n $loading ]] && ! grep -q "^serving " "$WORK/ctr.log"; then
    echo "loading (onnxruntime mapped, not serving yet): SIGTERM now"
  else
    echo "NOTE: the load was not caught in the act: this stop tested start-up or a running server"
  fi
  stop_ctr 10
  echo "exit status $STOP_RC after ${STOP_SECS}s; the container's last words:"
  tail -2 "$WORK/ctr.log"
  if [[ $STOP_RC != 143 && $STOP_RC != 0 ]] || ((STOP_SECS >= 10)); then
    tail -5 "$WORK/ctr.log"; die "$name did not end promptly on SIGTERM during load"
  fi
  step "$name: default CMD in its own network namespace; tritonclient from the host to $CTR_IP"
  ctr -d --net "$NETNS" --user "$HOST_UID:$HOST_UID" -v "$DATA/repo:/models" "$image"
  status=0
  PYTHONPATH=$PWD "$PY" tools/docker_serve_check.py --http "$CTR_IP:8000" --model cbam \
    --golden "$DATA/cbam/cbam.golden.npz" --timeout 90 || status=$?
  stop_ctr 15
  echo "docker stop: exit status $STOP_RC after ${STOP_SECS}s"
  if ((status)) || ((STOP_SECS >= 15)); then tail -20 "$WORK/ctr.log"; die "$name: serve check"; fi
}

costs() {
  step "cost: $((SECONDS - T0)) s in all; disk under $WORK: $(du -sh "$WORK" | cut -f1)"
  "${BUILDAH[@]}" images
}

main() {
  ensure_tools
  make_base bookworm "$BOOKWORM"
  make_wheelhouse
  build "$X86" docker/Dockerfile --build-arg BASE="$BOOKWORM" --build-arg TORCH_INDEX= \
    -v "$WORK/wheelhouse:/wheelhouse:ro"
  # both bases named whatever JETPACK is: an unused stage's base must not be pulled either
  local bases=(--build-arg BASE_JP7="$TRIXIE" --build-arg L4T_APT= --build-arg BASE_JP6="$BOOKWORM")
  build "$JP6" docker/Dockerfile.jetson "${bases[@]}" --build-arg JETPACK=6
  make_base trixie "$TRIXIE"
  # JETPACK=7 named although it is the default: buildah 1.28 (Debian 12) does not apply an ARG's
  # default to a stage name (FROM base-${JETPACK}); BuildKit and newer buildah do.
  build "$JP7" docker/Dockerfile.jetson "${bases[@]}" --build-arg JETPACK=7
  "${BUILDAH[@]}" rmi --prune > /dev/null  # the wheel stages' images
  DATA=$WORK/data
  rm -rf "$DATA" && mkdir -p "$DATA" && chown "$HOST_UID:$HOST_UID" "$DATA"
  check_x86
  # TensorRT 10.3's real bindings (cp311, the JetPack 6 stand-in's Python) over the C stub
  local trt6=() shim=$WORK/trt-shim
  if [[ -d $TRT_BINDINGS/10.3.0/tensorrt_bindings ]]; then
    mkdir -p "$shim/tensorrt"
    printf 'from tensorrt_bindings import *  # noqa: F403\nfrom tensorrt_bindings import __version__\n' \
      > "$shim/tensorrt/__init__.py"
    trt6=(-v "$(cd "$TRT_BINDINGS/10.3.0" && pwd):/opt/trt" -v "$shim:/opt/trt-shim"
          -e PYTHONPATH=/opt/trt-shim:/opt/trt -e LD_LIBRARY_PATH=/opt/trt/lib)
  else
    step "NOTE: $TRT_BINDINGS/10.3.0 absent (run make): JetPack 6 checked without TensorRT"
  fi
  check_jetson "$JP7" "JetPack 7.2 recipe (trixie stand-in)" cuda_driver,gpu,tensorrt
  if ((${#trt6[@]})); then
    check_jetson "$JP6" "JetPack 6 recipe (bookworm stand-in)" cuda_driver,gpu "${trt6[@]}"
  else
    check_jetson "$JP6" "JetPack 6 recipe (bookworm stand-in)" cuda_driver,gpu,tensorrt
  fi
  step "repository of the dynamic-batch export (JetPack 7.2 image), owned by uid $HOST_UID"
  ctr --user "$HOST_UID:$HOST_UID" -v "$DATA:/data" "$JP7" repo /data/cbam --out /data/repo \
    --prefer onnx > /dev/null
  make_netns
  check_serve "$JP7" "JetPack 7.2 recipe"
  check_serve "$JP6" "JetPack 6 recipe"
  check_serve "$X86" "x86 image"
  costs
  step "docker-test passed"
}

main "$@"
