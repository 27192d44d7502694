#!/usr/bin/env bash
# torch on the Raspberry Pi's CPUs, emulated: a Debian arm64 root file system run through qemu-user
# with QEMU_CPU set to the Pi 4's Cortex-A72 (ARMv8.0) and the Pi 5's Cortex-A76 (ARMv8.2).
# For each torch version: install the registry's aarch64 wheel, run a smoke test and a small
# `edgetrgl train` under each CPU model, record exit codes (132 = SIGILL) and the last lines.
#
# Usage (as root, on a Debian/Ubuntu x86_64 host; a benchmark, not part of CI):
#   benchmarks/aarch64/run.sh [TORCH_VERSION ...]     # default: see VERSIONS below
#   CPUS="cortex-a72" benchmarks/aarch64/run.sh 2.10.0
# Re-runnable: the rootfs and each version's venv are reused when already there (delete
# $ROOTFS/opt/venvs/torch-V to reinstall one). Records accumulate in $WORK/records.jsonl; the
# report (RESULTS.md, results.json beside this script) keeps the latest per version and CPU.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
ROOTFS=${ROOTFS:-/var/tmp/edgetrgl-arm64-rootfs}
SUITE=${SUITE:-bookworm}
CPUS=${CPUS:-"cortex-a72 cortex-a76"}
WORK=${WORK:-/var/tmp/edgetrgl-aarch64-work}
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-1200}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-2400}
INSTALL_TIMEOUT=${INSTALL_TIMEOUT:-3600}
if [[ $# -gt 0 ]]; then VERSIONS=("$@"); else VERSIONS=(2.15.0 2.11.0 2.10.0 2.6.0 2.4.1 2.4.0); fi
# the versions whose `edgetrgl train` runs in full under every CPU (default: all); the others train
# only where the smoke test died of SIGILL (the train then dies at import in seconds, measured)
TRAIN_VERSIONS=${TRAIN_VERSIONS:-"${VERSIONS[*]}"}
export WORK
LOGDIR=$WORK/logs/$(date +%Y%m%dT%H%M%S)
NICE=(nice -n 10)   # the host is shared
SRC=/opt/edgetrgl-src   # the worktree's copy, inside the rootfs
MOUNTED=()
CHILD=

log() { printf '\n[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
record() { python3 "$HERE/results.py" add "$@"; }

cleanup() {
    local i
    if [[ -n ${CHILD:-} ]]; then   # timeout passes the TERM on to the emulated command
        kill -TERM "$CHILD" 2>/dev/null || true
        kill -CONT "$CHILD" 2>/dev/null || true   # once seen stopped (state T), deaf to the TERM
        wait "$CHILD" 2>/dev/null || true
    fi
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" || echo "run.sh: could not unmount ${MOUNTED[i]}" >&2
    done
    [[ ${#MOUNTED[@]} -gt 0 ]] && echo "run.sh: unmounted ${MOUNTED[*]}"
    MOUNTED=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# mount_once TARGET MOUNT-ARGS...: mount unless mounted (a killed earlier run), remember for cleanup
mount_once() {
    local target=$1; shift
    mountpoint -q "$target" || mount "$@" "$target"
    MOUNTED+=("$target")
}

# in_chroot CPU CMD...: run CMD in the rootfs under qemu-user emulating CPU, with a clean environment
# (no host PIP_* settings leak in); qemu-user reads QEMU_CPU when binfmt starts it. One torch
# thread: under emulation on a shared host, OpenMP's spin-waiting threads starved each other.
chroot_prefix() {
    PREFIX=("${NICE[@]}" env -i HOME=/root LANG=C.UTF-8 TERM=dumb QEMU_CPU="$1"
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off PIP_DEFAULT_TIMEOUT=180
        PIP_CERT=/etc/ssl/certs/edgetrgl-host-ca.crt OMP_NUM_THREADS=1
        chroot "$ROOTFS")
}
in_chroot() {
    chroot_prefix "$1"; shift
    "${PREFIX[@]}" "$@"
}

# timed LOG LIMIT CPU CMD...: in_chroot with a time limit, output to LOG and its last lines to the
# console; sets RC (124 = timed out, 132 = SIGILL) and WALL (seconds)
timed() {
    local logfile=$1 limit=$2 cpu=$3; shift 3
    local start; start=$(date +%s.%N)
    RC=0
    # the host's timeout, in the background and waited for: a signal to this script then runs its
    # traps at once, and cleanup's TERM reaches the emulated program through timeout (an emulated
    # timeout inside the chroot did not pass it on)
    chroot_prefix "$cpu"
    timeout --kill-after=30 "$limit" "${PREFIX[@]}" "$@" > "$logfile" 2>&1 < /dev/null &
    CHILD=$!
    wait "$CHILD" || RC=$?
    CHILD=
    WALL=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
    tail -n 4 "$logfile" | sed 's/^/    | /'
    echo "    -> exit $RC, ${WALL} s"
}

ulimit -c 0   # a SIGILL under qemu would otherwise dump a core of the whole torch process
[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap, chroot and mount need it)"
mkdir -p "$LOGDIR"
log "logs and records: $LOGDIR, $WORK/records.jsonl"

# 1. host packages -----------------------------------------------------------------------------
if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null \
        || ! command -v update-binfmts >/dev/null; then
    log "installing qemu-user-static, binfmt-support, debootstrap"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-user-static binfmt-support debootstrap
fi
QEMU_VERSION=$(qemu-aarch64-static --version | head -1)
log "$QEMU_VERSION"
for cpu in $CPUS; do
    { qemu-aarch64-static -cpu help || true; } | grep -w -- "$cpu" >/dev/null || die "this qemu has no CPU model $cpu"
done

# binfmt_misc lets the chroot exec aarch64 programs (pip and venv spawn children); the F flag of
# Debian's registration makes the kernel keep the host's qemu binary open, so none is copied in
if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount_once /proc/sys/fs/binfmt_misc -t binfmt_misc binfmt_misc
fi
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || die "binfmt qemu-aarch64 is not enabled"

# 2. the arm64 root file system ------------------------------------------------------------------
# the mirror apt uses here (the first non-security Debian URI in the sources)
apt_mirror() {
    local file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
        [[ -f $file ]] && grep -v '^[[:space:]]*#' "$file" | grep -oE 'https?://[^ ]+/debian/?( |$)' | tr -d ' '
    done | sed -n 1p
}
MIRROR=${MIRROR:-$(apt_mirror || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if [[ -f $ROOTFS/.edgetrgl-rootfs-ready ]]; then
    log "reusing the rootfs in $ROOTFS ($(cat "$ROOTFS/etc/debian_version"))"
else
    log "debootstrap $SUITE arm64 from $MIRROR into $ROOTFS (first stage, native)"
    rm -rf "$ROOTFS.tmp"
    "${NICE[@]}" debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,python3-venv,python3-pip,ca-certificates "$SUITE" "$ROOTFS.tmp" "$MIRROR"
    log "debootstrap second stage (emulated)"
    "${NICE[@]}" chroot "$ROOTFS.tmp" /debootstrap/debootstrap --second-stage
    for m in proc sys; do   # the second stage mounts these and can leave them mounted
        if mountpoint -q "$ROOTFS.tmp/$m"; then umount "$ROOTFS.tmp/$m"; fi
    done
    rm -rf "$ROOTFS"
    mv "$ROOTFS.tmp" "$ROOTFS"
    touch "$ROOTFS/.edgetrgl-rootfs-ready"
fi
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"   # PyPI by name from inside
# the host's CA bundle, for pip inside: it includes any TLS-inspecting proxy's CA that this host trusts
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
cp -L "$HOST_CA" "$ROOTFS/etc/ssl/certs/edgetrgl-host-ca.crt"

mount_once "$ROOTFS/proc" -t proc proc
mount_once "$ROOTFS/sys" --bind -o ro /sys
mount_once "$ROOTFS/dev/shm" -t tmpfs -o size=1g tmpfs

# the worktree as it is (tracked and untracked, not ignored files), copied fresh each run
log "copying $REPO into $ROOTFS$SRC"
rm -rf "$ROOTFS$SRC" && mkdir -p "$ROOTFS$SRC"
(cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$ROOTFS$SRC"
COMMIT=$(cd "$REPO" && git rev-parse --short HEAD)$(cd "$REPO" && git diff --quiet HEAD -- . && echo "" || echo "+dirty")

ROOTFS_PY=$(in_chroot max python3 --version)
ROOTFS_PIP=$(in_chroot max python3 -m pip --version | cut -d' ' -f1-2)
HOST_JSON=$LOGDIR/host.json
DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) HOST="$(uname -srm), $(nproc) CPUs, $(free -g | awk '/Mem/{print $2}') GiB" \
HOST_CPU=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1) QEMU="$QEMU_VERSION" \
ROOTFS_DESC="Debian $(cat "$ROOTFS/etc/debian_version") ($SUITE) arm64, debootstrap --variant=minbase from $MIRROR, at $ROOTFS" \
ROOTFS_PY="$ROOTFS_PY" PIPV="$ROOTFS_PIP" COMMIT="$COMMIT" CMD="benchmarks/aarch64/run.sh ${VERSIONS[*]} (CPUS=\"$CPUS\")" \
python3 -c 'import json, os; e = os.environ; print(json.dumps({"date": e["DATE"], "host": e["HOST"], "host_cpu": e["HOST_CPU"], "qemu": e["QEMU"], "rootfs": e["ROOTFS_DESC"], "rootfs_python": e["ROOTFS_PY"], "pip": e["PIPV"], "edgetrgl_commit": e["COMMIT"], "command": e["CMD"]}))' > "$HOST_JSON"
record host --extra "$HOST_JSON"
cat "$HOST_JSON"

# 3. what each emulated CPU model offers -----------------------------------------------------------
for cpu in $CPUS max; do
    log "probe: QEMU_CPU=$cpu"
    timed "$LOGDIR/probe-$cpu.log" 300 "$cpu" python3 "$SRC/benchmarks/aarch64/probe_cpu.py"
    record probe --cpu "$cpu" --rc "$RC" --wall "$WALL" --log "$LOGDIR/probe-$cpu.log" \
        --command "QEMU_CPU=$cpu chroot ROOTFS python3 $SRC/benchmarks/aarch64/probe_cpu.py"
done

# which torch versions pip offers to this rootfs's Python on aarch64
log "pip index versions torch (inside the rootfs)"
timed "$LOGDIR/pip-index.log" 600 cortex-a72 python3 -m pip index versions torch
python3 -c 'import json, re, sys; t = open(sys.argv[1]).read(); m = re.search(r"Available versions: (.*)", t); print(json.dumps({"available": m.group(1) if m else None}))' \
    "$LOGDIR/pip-index.log" > "$LOGDIR/pip-index.json"
record pip_index --rc "$RC" --wall "$WALL" --log "$LOGDIR/pip-index.log" --extra "$LOGDIR/pip-index.json" \
    --command "QEMU_CPU=cortex-a72 chroot ROOTFS python3 -m pip index versions torch"

# where_sigill VERSION CPU KIND CMD...: rerun CMD under qemu's syscall trace and locate the faulting
# instruction (library, symbol, instruction word); sets WHERE_JSON, merged into the KIND record
where_sigill() {
    local version=$1 cpu=$2 kind=$3; shift 3
    local trace=$LOGDIR/strace-$kind-$version-$cpu.log
    WHERE_JSON=$LOGDIR/where-$kind-$version-$cpu.json
    log "torch $version, QEMU_CPU=$cpu: locating the SIGILL (QEMU_STRACE=1)"
    chroot_prefix "$cpu"
    PREFIX=("${PREFIX[@]:0:5}" QEMU_STRACE=1 "${PREFIX[@]:5}")   # after `nice -n 10 env -i`
    timeout --kill-after=30 600 "${PREFIX[@]}" "$@" > "$trace" 2>&1 < /dev/null || true
    { python3 "$HERE/where_sigill.py" "$trace" "$ROOTFS" || echo '{"error": "where_sigill.py failed"}'; } \
        | python3 -c 'import json, sys; print(json.dumps({"where_sigill": json.load(sys.stdin)}))' > "$WHERE_JSON"
    cat "$WHERE_JSON"
}

# 4. per torch version: install, then smoke and train under each CPU ---------------------------
for version in "${VERSIONS[@]}"; do
    venv=/opt/venvs/torch-$version
    minor=$(echo "$version" | cut -d. -f2)
    tv="0.$((minor + 15)).*"   # torchvision 0.(m+15) pairs with torch 2.m
    marker=$ROOTFS$venv/.edgetrgl-install.json
    # --no-compile: byte-compiling torch's ~6,000 .py files under emulation was still going 12 minutes
    # into the first (17-minute) install on the shared host; the imports compile what they use
    install_cmd="QEMU_CPU=cortex-a72 chroot ROOTFS $venv/bin/pip install --no-compile torch==$version torchvision==$tv -e $SRC"
    if [[ -f $marker ]]; then
        log "torch $version: reusing $venv"
        record install --torch "$version" --rc 0 --wall 0 --reused --extra "$marker" --command "$install_cmd"
    else
        log "torch $version: installing into $venv (emulated cortex-a72; df: $(df -h --output=avail /var/tmp | tail -1))"
        rm -rf "$ROOTFS$venv"
        timed "$LOGDIR/install-$version.log" "$INSTALL_TIMEOUT" cortex-a72 \
            bash -c "python3 -m venv $venv && $venv/bin/pip install --no-compile torch==$version 'torchvision==$tv' -e $SRC && $venv/bin/pip freeze"
        size=$(du -sm "$ROOTFS$venv" 2>/dev/null | cut -f1)
        printf '{"first_install_wall_s": %s, "venv_mib": %s}\n' "$WALL" "${size:-0}" > "$LOGDIR/install-$version.json"
        record install --torch "$version" --rc "$RC" --wall "$WALL" --log "$LOGDIR/install-$version.log" \
            --extra "$LOGDIR/install-$version.json" --command "$install_cmd"
        if [[ $RC -ne 0 ]]; then
            log "torch $version: install failed (exit $RC), skipping its runs"
            rm -rf "$ROOTFS$venv"
            continue
        fi
        cp "$LOGDIR/install-$version.json" "$marker"
    fi
    for cpu in $CPUS; do
        log "torch $version, QEMU_CPU=$cpu: smoke test"
        timed "$LOGDIR/smoke-$version-$cpu.log" "$SMOKE_TIMEOUT" "$cpu" $venv/bin/python "$SRC/benchmarks/aarch64/smoke.py"
        smoke_rc=$RC smoke_wall=$WALL WHERE_JSON=
        if [[ $smoke_rc -eq 132 ]]; then
            where_sigill "$version" "$cpu" smoke $venv/bin/python "$SRC/benchmarks/aarch64/smoke.py"
        fi
        record smoke --torch "$version" --cpu "$cpu" --rc "$smoke_rc" --wall "$smoke_wall" --log "$LOGDIR/smoke-$version-$cpu.log" \
            --extra "$WHERE_JSON" --command "QEMU_CPU=$cpu chroot ROOTFS $venv/bin/python $SRC/benchmarks/aarch64/smoke.py"
        if [[ $smoke_rc -ne 132 && " $TRAIN_VERSIONS " != *" $version "* ]]; then
            log "torch $version, QEMU_CPU=$cpu: train skipped (not in TRAIN_VERSIONS, and the smoke test did not die of SIGILL)"
            continue
        fi

        log "torch $version, QEMU_CPU=$cpu: edgetrgl train (small.toml)"
        out=/tmp/edgetrgl-runs/torch-$version-$cpu
        rm -rf "$ROOTFS$out"   # never read a stale summary.json
        timed "$LOGDIR/train-$version-$cpu.log" "$TRAIN_TIMEOUT" "$cpu" \
            $venv/bin/edgetrgl train --config "$SRC/benchmarks/aarch64/small.toml" --out "$out" --overwrite
        record train --torch "$version" --cpu "$cpu" --rc "$RC" --wall "$WALL" --log "$LOGDIR/train-$version-$cpu.log" \
            --summary "$ROOTFS$out/summary.json" \
            --command "QEMU_CPU=$cpu chroot ROOTFS $venv/bin/edgetrgl train --config $SRC/benchmarks/aarch64/small.toml --out $out --overwrite"
    done
done

log "writing the report"
python3 "$HERE/results.py" write
log "disk: $(df -h --output=avail /var/tmp | tail -1) free in /var/tmp; venvs: $(du -sh "$ROOTFS/opt/venvs" | cut -f1)"
