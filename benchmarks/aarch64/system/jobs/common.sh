# Sourced by every guest job (job.sh, written by run.sh, sets TORCH and THREADS first).
# Runs on the emulated Pi 4: the torch under test is /opt/torch-$TORCH (a read-only disk built on
# the host), edgetrgl's source is copied from the share, results go to /mnt/host/out row by row.
set -u
OUT=/mnt/host/out
SITE=/opt/torch-$TORCH
SRC=/root/src
SYS=$SRC/benchmarks/aarch64/system
RUNS=/root/runs   # on the virtio root disk: the emulated board's SD card
mkdir -p "$SRC" "$RUNS"
# once per root disk: the second boot of the power-cut case resumes with the code the first ran
if [[ ! -e $SRC/.copied ]]; then cp -a /mnt/host/src/. "$SRC/" && touch "$SRC/.copied"; fi
export PYTHONPATH=$SITE:$SRC PATH=$SITE/bin:$PATH PYTHONUNBUFFERED=1 OMP_NUM_THREADS=$THREADS
E=(python3 -m edgetrgl)

# step NAME LIMIT_S CMD...: run CMD under memwatch.py with a time limit; its output in OUT/NAME.log,
# its memory in OUT/NAME.mem.json(l), one line in OUT/steps.jsonl
step() {
    local name=$1 limit=$2 start rc; shift 2
    start=$(date +%s.%N)
    echo "== $name: $*"
    timeout -k 20 "$limit" python3 "$SYS/memwatch.py" --out "$OUT/$name.mem.json" -- "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    printf '{"step": "%s", "rc": %d, "wall_s": %.1f, "limit_s": %d, "uptime_s": %s, "command": "%s"}\n' \
        "$name" "$rc" "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$limit" "$(cut -d' ' -f1 /proc/uptime)" "$*" >> "$OUT/steps.jsonl"
    tail -n 3 "$OUT/$name.log"
    echo "   -> exit $rc"
    sync
    return "$rc"
}

# what the emulated board shows a program that asks what it runs on
board_facts() {
    {
        echo "## uname"; uname -a
        echo "## /proc/device-tree/model"; tr -d '\0' < /proc/device-tree/model 2>&1; echo
        echo "## /proc/device-tree/compatible"; tr '\0' ' ' < /proc/device-tree/compatible 2>&1; echo
        echo "## midr_el1 (cpu0)"; cat /sys/devices/system/cpu/cpu0/regs/identification/midr_el1 2>&1
        echo "## nproc"; nproc --all
        echo "## /proc/cpuinfo (cpu0)"; sed -n '1,/^$/p' /proc/cpuinfo
        echo "## /proc/meminfo"; head -5 /proc/meminfo
        echo "## block devices"; ls -l /sys/block/
        echo "## python"; python3 --version
        echo "## torch disk"; ls "$SITE" | head -50
    } > "$OUT/board.txt" 2>&1
}

# the wheels on the torch disk, as `pip freeze` would list them
installed() {
    ls -d "$SITE"/*.dist-info | sed 's#.*/##; s/\.dist-info$//; s/-/==/' > "$OUT/installed.txt"
}
