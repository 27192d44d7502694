#!/usr/bin/env bash
# A power cut in the middle of a checkpoint write on an emulated Raspberry Pi 4, resumed and compared
# bitwise with the uninterrupted run. qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 4 -m 2048,
# Debian 12 arm64, the registry's aarch64 torch wheels; the run folder on a data disk the host does
# not cache (cache=none), ext4 in the guest.
#
# Usage (root, x86_64 Debian 12 host; a benchmark, not part of CI):
#   benchmarks/aarch64/powercut/run.sh [--record]
# Three boots, each running the same `edgetrgl train ... --auto-resume` (job.sh):
#   full    the uninterrupted run on its own data disk; it counts its fault points (EDGETRGL_FAULT_COUNTS)
#   cut-Ds     a fresh data disk; the process is held in the middle of checkpoint write N (the middle
#              one of those the full run counted: half the file written, nothing fsync'd), the guest
#              says so on the 9p share and the host SIGKILLs QEMU D seconds later (CUT_DELAYS)
#   resume-Ds  the cut's data disk: what the cut left, then the run resumed to its end
# compare.py then loads both model.pt files on the host and compares them tensor by tensor.
# Without --record the results go to $CACHE/results; with it, to RESULTS.md and results.json here.
# Cached outside git in $CACHE (root file system, wheels, images): delete a piece to rebuild it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
CACHE=${CACHE:-/var/cache/edgetrgl-powercut}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
TORCH=${TORCH:-2.9.1} VISION=${VISION:-0.24.1}   # 2.9.1: no ARMv8.1 atomics, runs on the A72 model
THREADS=${THREADS:-1}
# host seconds from the guest's "stalled" line to the cut, one cut-Ds/resume-Ds pair each: 0, at once
# (the torn file still in the guest's page cache; recorded); CUT_DELAYS="0 45" adds a cut after
# ext4's journal commit (5 s) and the writeback of dirty data (30 s) (not yet run to its end)
CUT_DELAYS=${CUT_DELAYS:-0}
PY=${PY:-python3}            # the host's Python 3.11 (it byte-compiles the guest's packages)
TORCH_PY=${TORCH_PY:-python3}   # a host Python with torch, for compare.py
NICE=(nice -n 15)
RESULTS=$CACHE/results
[[ ${1:-} == --record ]] && RESULTS=$HERE
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap and chroot need it)"
mkdir -p "$CACHE"/{wheels,disks,boots}

# 1. host packages
need=()
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static binfmt-support)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-img >/dev/null || need+=(qemu-utils)
if [[ ${#need[@]} -gt 0 ]]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
[[ -e /proc/sys/fs/binfmt_misc/register ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64

# 2. the root file system (debootstrap, second stage under qemu-user), kernel and initrd
R=$CACHE/rootfs.tmp
if [[ ! -f $R/.edgetrgl-rootfs-ready ]]; then
    log "debootstrap bookworm arm64"
    rm -rf "$R"
    "${NICE[@]}" debootstrap --arch=arm64 --foreign --variant=minbase --include=python3,linux-image-arm64,kmod,procps \
        bookworm "$R" "$MIRROR"
    # INITRD=No: no Debian initrd (slow under qemu-user); initrd.py builds the few modules needed
    "${NICE[@]}" chroot "$R" env INITRD=No /debootstrap/debootstrap --second-stage
    touch "$R/.edgetrgl-rootfs-ready"
fi
ROOT_IMG=$CACHE/disks/rootfs.img
if [[ ! -f $ROOT_IMG || $HERE/guest_init.sh -nt $ROOT_IMG ]]; then
    install -m 755 "$HERE/guest_init.sh" "$R/sbin/edgetrgl-init"
    kernel=$(ls "$R"/boot/vmlinuz-* | sort -V | tail -1)
    "$PY" "$HERE/initrd.py" "$R" "${kernel##*/vmlinuz-}" "$CACHE/disks/initrd.img"
    cp "$kernel" "$CACHE/disks/vmlinuz"
    "${NICE[@]}" mke2fs -q -F -t ext4 -L edgetrgl-root -d "$R" "$ROOT_IMG.tmp" 2G && mv "$ROOT_IMG.tmp" "$ROOT_IMG"
fi

# 3. torch for linux aarch64 cp311, installed on the host onto a read-only disk
TORCH_IMG=$CACHE/disks/torch-$TORCH.img
if [[ ! -f $TORCH_IMG ]]; then
    log "torch $TORCH + torchvision $VISION -> $TORCH_IMG"
    PIP=(env PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= PIP_DISABLE_PIP_VERSION_CHECK=1 "${NICE[@]}" "$PY" -m pip)
    P=(--python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none --only-binary=:all:
       --platform manylinux2014_aarch64 --platform linux_aarch64)
    for i in $(seq 17 36); do P+=(--platform "manylinux_2_${i}_aarch64"); done   # glibc 2.36: Debian 12
    "${PIP[@]}" download -q --no-deps -d "$CACHE/wheels" "${P[@]}" "torch==$TORCH" "torchvision==$VISION"
    tw=$(ls "$CACHE"/wheels/torch-"$TORCH"-*aarch64*.whl | head -1)
    tvw=$(ls "$CACHE"/wheels/torchvision-"$VISION"-*aarch64*.whl | head -1)
    mapfile -t reqs < <("$PY" "$HERE/wheel_requires.py" --skip torch "$tw" "$tvw")
    deps=("${reqs[@]}" numpy psutil nvidia-ml-py rich)   # edgetrgl's own
    "${PIP[@]}" download -q -d "$CACHE/wheels" "${P[@]}" "${deps[@]}"
    site=$CACHE/site.tmp
    rm -rf "$site"
    "${PIP[@]}" install -q --no-compile --no-index --find-links "$CACHE/wheels" --target "$site" "${P[@]}" --no-deps "$tw" "$tvw"
    "${PIP[@]}" install -q --no-compile --no-index --find-links "$CACHE/wheels" --target "$site" "${P[@]}" "${deps[@]}"
    "${NICE[@]}" "$PY" -m compileall -q -j 2 "$site" > /dev/null || true   # a read-only disk: compile once here
    mib=$(du -sm "$site" | cut -f1)
    "${NICE[@]}" mke2fs -q -F -t ext4 -L torch -d "$site" "$TORCH_IMG.tmp" "$((mib * 12 / 10 + 256))M"
    mv "$TORCH_IMG.tmp" "$TORCH_IMG"
fi

# 4. the boots
SRC=$CACHE/src
rm -rf "$SRC" && mkdir -p "$SRC"
(cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$SRC"
"$PY" -m compileall -q "$SRC/edgetrgl" > /dev/null   # the guest's Python 3.11 reads these (cp -a keeps mtimes)
BOOT_PID=
trap '[[ -n $BOOT_PID ]] && kill -TERM "$BOOT_PID" 2>/dev/null; wait' EXIT   # boot.py stops its QEMU

# boot NAME PHASE DATA_IMG [boot.py args...]
boot() {
    local name=$1 phase=$2 data=$3; shift 3
    local dir=$CACHE/boots/$name
    rm -rf "$dir" && mkdir -p "$dir/share/out"
    cp -a "$SRC" "$dir/share/src"
    printf 'PHASE=%s\nTHREADS=%s\nSTALL_AT=%s\nsource /mnt/host/src/benchmarks/aarch64/powercut/job.sh\n' \
        "$phase" "$THREADS" "${STALL_AT:-}" > "$dir/share/job.sh"
    qemu-img create -q -f qcow2 -b "$ROOT_IMG" -F raw "$dir/root.qcow2"
    log "boot $name (phase $phase, data disk ${data##*/})"
    "$PY" "$HERE/boot.py" --kernel "$CACHE/disks/vmlinuz" --initrd "$CACHE/disks/initrd.img" --root "$dir/root.qcow2" \
        --torch "$TORCH_IMG" --data "$data" --share "$dir/share" --record "$dir/boot.json" "$@" &
    BOOT_PID=$!
    wait "$BOOT_PID"
    BOOT_PID=
    rm -f "$dir/root.qcow2"
}
new_data() { rm -f "$1" && mke2fs -q -F -t ext4 -L edgetrgl-data "$1" 1G; }

new_data "$CACHE/disks/data-full.img"
boot full full "$CACHE/disks/data-full.img"
N=$("$PY" -c 'import json,sys; print((json.load(open(sys.argv[1]))["checkpoint_write"] + 1) // 2)' \
    "$CACHE/boots/full/share/out/faults.json") || die "the full run recorded no fault counts"
for delay in $CUT_DELAYS; do   # each cut on a fresh disk, then resumed from it
    new_data "$CACHE/disks/data-cut.img"
    STALL_AT=checkpoint_write:$N boot "cut-${delay}s" cut "$CACHE/disks/data-cut.img" --cut-delay "$delay" \
        --cut-when "stalled at checkpoint_write:$N" --watch "$CACHE/boots/cut-${delay}s/share/out/train.log"
    boot "resume-${delay}s" resume "$CACHE/disks/data-cut.img"
done
PYTHONPATH=$REPO "$TORCH_PY" "$HERE/compare.py" "$CACHE/boots" --cut-delays $CUT_DELAYS --results "$RESULTS" --qemu "$(qemu-system-aarch64 --version | head -1)"
