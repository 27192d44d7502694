#!/usr/bin/env bash
# A Raspberry Pi 4 under full-system emulation: qemu-system-aarch64 -M virt -cpu cortex-a72
# (ARMv8.0, no LSE atomics, as the Pi 4's BCM2711) -smp 4 -m 2048 (the rpi4-2gb's RAM: the guest
# kernel's OOM killer judges, no cgroup), Debian 12 arm64 (kernel, initrd, Python 3.11) and the
# registry's aarch64 torch wheels installed on the host, no network in the guest.
#
# Usage (as root on an x86_64 Debian 12 host; a benchmark, not part of CI):
#   benchmarks/aarch64/system/run.sh [STEP ...]
# STEP: full:VERSION (board facts, smoke, devices detect, the rpi4-2gb profile run, export, predict),
#   oom:VERSION (e2e ResNet-110 that does not fit 2 GiB), resume:VERSION (power cut, then --resume).
# Default: full:2.11.0 oom:2.11.0 resume:2.11.0 full:2.4.1 full:2.14.1 full:2.10.0 full:2.6.0.
# THREADS (default 1) is the guest's OMP_NUM_THREADS: with 2, torch 2.11.0 and 2.14.1 die of SIGILL
# in their threaded BLAS (RESULTS.md); each boot's name carries it (full-2.11.0-t1). Several
# run.sh may run at once (different steps); the records file is appended one line per boot.
# Cached outside git in $CACHE (root file system, wheels, disk images): delete a piece to rebuild
# it. Each boot's share (job, logs, memory samples, dmesg) is kept in $CACHE/boots/NAME; its
# records go to records.jsonl beside this script and RESULTS.md is rewritten after every boot.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
CACHE=${CACHE:-/var/cache/edgetrgl-aarch64}
SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
THREADS=${THREADS:-1}            # torch threads in the guest (OMP_NUM_THREADS; 4 vCPUs either way)
BOOT_TIMEOUT=${BOOT_TIMEOUT:-7200}
RESUME_KILL_DELAY=${RESUME_KILL_DELAY:-30}
NICE=(nice -n 15)
RECORDS=$HERE/records.jsonl
if [[ $# -gt 0 ]]; then STEPS=("$@"); else
    STEPS=(full:2.11.0 oom:2.11.0 resume:2.11.0 full:2.4.1 full:2.14.1 full:2.10.0 full:2.6.0); fi
# torchvision 0.(m+15) pairs with torch 2.m; the release that pip resolves for each pair
declare -A VISION=([2.4.1]=0.19.1 [2.5.1]=0.20.1 [2.6.0]=0.21.0 [2.7.1]=0.22.1 [2.8.0]=0.23.0 [2.9.1]=0.24.1 [2.10.0]=0.25.0 [2.11.0]=0.26.0 [2.14.1]=0.29.1)
EXTRA_DEPS=(numpy psutil nvidia-ml-py rich)   # edgetrgl's own, besides torch and torchvision

log() { printf '\n[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }
TMP_PATHS=()
cleanup() {
    local p
    [[ -n ${BOOT_PID:-} ]] && kill -TERM "$BOOT_PID" 2>/dev/null && wait "$BOOT_PID" 2>/dev/null   # boot.py stops its QEMU
    for p in "${TMP_PATHS[@]}"; do rm -rf "$p"; done
    for p in proc sys dev/pts dev; do   # a chroot step that was interrupted
        mountpoint -q "$CACHE/rootfs.tmp/$p" 2>/dev/null && umount -l "$CACHE/rootfs.tmp/$p"
    done
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap and chroot need it)"
mkdir -p "$CACHE"/{wheels,site,disks,boots}

# 1. host packages ------------------------------------------------------------------------------
need=()
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static binfmt-support)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v mke2fs >/dev/null || need+=(e2fsprogs)
if [[ ${#need[@]} -gt 0 ]]; then
    log "apt-get install ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
[[ -e /proc/sys/fs/binfmt_misc/register ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64
PY=${PY:-python3}
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
    || die "the host's $PY must be 3.11 (it byte-compiles the guest's Python 3.11 packages)"
# the registry only: this host's pip configuration (local wheel folders, caps) stays out
PIP=(env PIP_CONFIG_FILE=/dev/null PIP_FIND_LINKS= PIP_CONSTRAINT= PIP_DISABLE_PIP_VERSION_CHECK=1
     PIP_CERT=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt} "${NICE[@]}" "$PY" -m pip)
PLATFORM=(--python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none --only-binary=:all:
          --platform manylinux2014_aarch64 --platform linux_aarch64)
for i in $(seq 17 36); do PLATFORM+=(--platform "manylinux_2_${i}_aarch64"); done   # glibc 2.36: Debian 12

# 2. the arm64 root file system, kernel and initrd --------------------------------------------------
ROOT_IMG=$CACHE/disks/rootfs.img
if [[ ! -f $CACHE/rootfs.tmp/.edgetrgl-rootfs-ready ]]; then
    log "debootstrap $SUITE arm64 (first stage native, second under qemu-user)"
    rm -rf "$CACHE/rootfs.tmp"
    "${NICE[@]}" timeout 3600 debootstrap --arch=arm64 --foreign --variant=minbase \
        --include=python3,linux-image-arm64,initramfs-tools,zstd,kmod,procps,udev \
        "$SUITE" "$CACHE/rootfs.tmp" "$MIRROR"
    # INITRD=No: the kernel's postinst skips update-initramfs (Debian's MODULES=most initrd took over
    # 30 minutes under qemu-user here); initrd.py builds the few modules the guest needs natively
    "${NICE[@]}" timeout 5400 chroot "$CACHE/rootfs.tmp" env INITRD=No /debootstrap/debootstrap --second-stage
    touch "$CACHE/rootfs.tmp/.edgetrgl-rootfs-ready"
fi
if [[ ! -f $ROOT_IMG || $HERE/guest_init.sh -nt $ROOT_IMG || $HERE/initrd.py -nt $ROOT_IMG ]]; then
    R=$CACHE/rootfs.tmp
    install -m 755 "$HERE/guest_init.sh" "$R/sbin/edgetrgl-init"
    echo edgetrgl-pi4 > "$R/etc/hostname"
    kernel=$(ls "$R"/boot/vmlinuz-* | sort -V | tail -1)
    version=${kernel##*/vmlinuz-}
    for m in 9pnet_virtio 9p; do   # loaded by guest_init.sh from the root file system
        find "$R/lib/modules/$version" -name "$m.ko*" | grep -q . || die "no $m module in the rootfs"
    done
    "$PY" "$HERE/initrd.py" "$R" "$version" "$CACHE/disks/initrd.img"
    cp "$kernel" "$CACHE/disks/vmlinuz"
    log "root disk image from $R ($(du -sh "$R" | cut -f1))"
    rm -f "$ROOT_IMG.tmp"
    TMP_PATHS+=("$ROOT_IMG.tmp")
    "${NICE[@]}" mke2fs -q -t ext4 -L edgetrgl-root -d "$R" "$ROOT_IMG.tmp" 6G
    mv "$ROOT_IMG.tmp" "$ROOT_IMG"
fi

# 3. a torch release, installed on the host for the board, on its own disk image ------------------
torch_disk() {
    local v=$1 tv=${VISION[$1]:-} site=$CACHE/site/torch-$1 img=$CACHE/disks/torch-$1.img
    [[ -n $tv ]] || die "no torchvision known for torch $v (add it to VISION)"
    [[ -f $img ]] && return 0
    log "torch $v + torchvision $tv for linux aarch64 cp311 -> $img"
    "${PIP[@]}" download -q --no-deps -d "$CACHE/wheels" "${PLATFORM[@]}" "torch==$v" "torchvision==$tv"
    local tw tvw reqs
    tw=$(ls "$CACHE"/wheels/torch-"$v"-*cp311-*aarch64*.whl | head -1)   # a build tag may follow the version
    tvw=$(ls "$CACHE"/wheels/torchvision-"$tv"-*cp311-*aarch64*.whl | head -1)
    mapfile -t reqs < <("$PY" "$HERE/wheel_requires.py" --skip torch "$tw" "$tvw")
    "${PIP[@]}" download -q -d "$CACHE/wheels" "${PLATFORM[@]}" "${reqs[@]}" "${EXTRA_DEPS[@]}"
    rm -rf "$site.tmp"
    TMP_PATHS+=("$site.tmp")
    "${PIP[@]}" install -q --no-index --find-links "$CACHE/wheels" --target "$site.tmp" "${PLATFORM[@]}" --no-deps "$tw" "$tvw"
    "${PIP[@]}" install -q --no-index --find-links "$CACHE/wheels" --target "$site.tmp" "${PLATFORM[@]}" "${reqs[@]}" "${EXTRA_DEPS[@]}"
    rm -rf "$site" && mv "$site.tmp" "$site"
    local mib; mib=$(du -sm "$site" | cut -f1)
    printf '{"torch": "%s", "torchvision": "%s", "site_mib": %s, "requires": "%s"}\n' "$v" "$tv" "$mib" "${reqs[*]}" > "$site/.edgetrgl-install.json"
    rm -f "$img.tmp"
    TMP_PATHS+=("$img.tmp")
    "${NICE[@]}" mke2fs -q -t ext4 -L "torch-$v" -d "$site" "$img.tmp" "$((mib * 12 / 10 + 256))M"
    mv "$img.tmp" "$img"
}

# test digits for `edgetrgl predict`, from the bundled data (host side, no torch)
IMAGES=$CACHE/images
if [[ ! -d $IMAGES ]]; then
    "$PY" "$HERE/digits.py" "$REPO/edgetrgl/data/files/mnist5k.npz" "$IMAGES.tmp" 6 && mv "$IMAGES.tmp" "$IMAGES"
fi

# 4. one boot: share (job, source, images), a fresh root overlay, the torch disk -------------------
# boot NAME JOB VERSION [OVERLAY_FROM] [boot.py kill args...]
boot() {
    local name=$1 job=$2 v=$3 keep=${4:-}; shift 4 || shift $#
    local dir=$CACHE/boots/$name share
    share=$dir/share
    rm -rf "$dir" && mkdir -p "$share/out" "$share/src"
    (cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -xf - -C "$share/src"
    cp -r "$IMAGES" "$share/images"
    printf 'TORCH=%s\nTHREADS=%s\nsource /mnt/host/src/benchmarks/aarch64/system/jobs/common.sh\nsource /mnt/host/src/benchmarks/aarch64/system/jobs/%s.sh\n' \
        "$v" "$THREADS" "$job" > "$share/job.sh"
    if [[ -n $keep ]]; then   # the second boot of the power-cut case: the first boot's disk
        mv "$CACHE/boots/$keep.qcow2" "$dir/root.qcow2"
    else
        qemu-img create -q -f qcow2 -b "$ROOT_IMG" -F raw "$dir/root.qcow2"
    fi
    log "boot $name: job $job, torch $v (limit ${BOOT_TIMEOUT} s)"
    local rc=0
    "$PY" "$HERE/boot.py" --kernel "$CACHE/disks/vmlinuz" --initrd "$CACHE/disks/initrd.img" \
        --root "$dir/root.qcow2" --disk "$CACHE/disks/torch-$v.img" --share "$share" \
        --record "$dir/boot.json" --timeout "$BOOT_TIMEOUT" "$@" &
    BOOT_PID=$!
    wait "$BOOT_PID" || rc=$?
    BOOT_PID=
    tail -n 20 "$share/out/job.log" 2>/dev/null | sed 's/^/    | /' || true
    "$PY" "$HERE/results.py" collect "$dir" --name "$name" --job "$job" --torch "$v" \
        --qemu "$(qemu-system-aarch64 --version | head -1)" --threads "$THREADS" --records "$RECORDS"
    "$PY" "$HERE/results.py" write --records "$RECORDS" --out "$HERE/RESULTS.md"
    return $rc
}

for item in "${STEPS[@]}"; do
    kind=${item%%:*} v=${item#*:}
    torch_disk "$v"
    t=t$THREADS   # boot names carry the thread count: one release may be measured with several
    case $kind in
        full) boot "full-$v-$t" full "$v" "" || true ;;
        oom) boot "oom-$v-$t" oom "$v" "" || true ;;
        resume)
            boot "resume1-$v-$t" resume1 "$v" "" --kill-when 'module 1/2 .*test accuracy' \
                --kill-file "$CACHE/boots/resume1-$v-$t/share/out/killed.log" --kill-delay "$RESUME_KILL_DELAY" || true
            mv "$CACHE/boots/resume1-$v-$t/root.qcow2" "$CACHE/boots/resume1-$v-$t.qcow2"
            boot "resume2-$v-$t" resume2 "$v" "resume1-$v-$t" || true ;;
        *) die "unknown step $item (full:V, oom:V or resume:V)" ;;
    esac
done
log "done; disk: $(df -h --output=avail "$CACHE" | tail -1) free under $CACHE"
