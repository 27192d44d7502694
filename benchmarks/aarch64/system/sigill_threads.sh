#!/bin/bash
# Where a torch release dies on the Cortex-A72 when it runs threads: its smoke test (smoke.py) under
# qemu-user (QEMU_CPU=cortex-a72) with OMP_NUM_THREADS=THREADS, on the site-packages run.sh installed
# for the emulated Pi 4, and with STRACE=1 the SIGILL located by ../where_sigill.py (library,
# symbol, instruction word). Results in benchmarks/aarch64/system/where/ (read by results.py).
#   STRACE=1 benchmarks/aarch64/system/sigill_threads.sh VERSION THREADS      # as root, after run.sh
set -u; ulimit -c 0
V=$1; T=$2
CACHE=${CACHE:-/var/cache/edgetrgl-aarch64}
R=$CACHE/rootfs.tmp
S=$CACHE/site/torch-$V
[[ -d $S ]] || { echo "sigill_threads.sh: no $S (run run.sh first)" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
W=$HERE/where; mkdir -p $W
mkdir -p $R/opt/torch-$V $R/opt/src $R/tmp/fakesys/devices/system/cpu/cpu0/regs/identification
# qemu-user has no /sys: oneDNN (torch >= 2.14) reads MIDR_EL1; give it the Cortex-A72's, as the full-system guest shows
echo 0x00000000410fd083 > $R/tmp/fakesys/devices/system/cpu/cpu0/regs/identification/midr_el1
cleanup() { umount $R/opt/torch-$V $R/proc $R/opt/src $R/sys 2>/dev/null; }
trap cleanup EXIT
mount --bind -o ro $S $R/opt/torch-$V
mount --bind -o ro "$HERE/../../.." $R/opt/src
mount -t proc proc $R/proc
mount --bind $R/tmp/fakesys $R/sys
timeout 1500 nice -n 15 env -i QEMU_CPU=cortex-a72 ${STRACE:+QEMU_STRACE=1} OMP_NUM_THREADS=$T PYTHONPATH=/opt/torch-$V PATH=/usr/bin:/bin /usr/sbin/chroot $R python3 /opt/src/benchmarks/aarch64/smoke.py > $CACHE/smoke-qemu-user-$V-t$T.log 2>&1
rc=$?
log=$CACHE/smoke-qemu-user-$V-t$T.log
where=null
[[ -n ${STRACE:-} && $rc -eq 132 ]] && where=$(python3 "$HERE/../where_sigill.py" "$log" "$R")
printf '{"torch": "%s", "threads": %s, "strace": %s, "rc": %s, "steps": "%s", "where": %s}\n' "$V" "$T" "$([[ -n ${STRACE:-} ]] && echo true || echo false)" "$rc" "$(grep -a -o -E "(STEP|OK) [a-z_]+( [0-9.]+)?" "$log" | tr "\n" " ")" "$where" > "$W/smoke-$V-t$T.json"
