# The guest's job (sourced by the job.sh run.sh writes, which sets PHASE, THREADS and STALL_AT).
# One command in every boot: `train --auto-resume` on the data disk, as a board's service would run
# it at each power-up. PHASE full: the uninterrupted run, counting its fault points; cut: the same
# with the process held in the middle of checkpoint write STALL_AT (half the file written, nothing
# fsync'd) while the host cuts the power; resume: what the cut left on disk, then the same command.
set -u
OUT=/mnt/host/out
RUN=/data/run
export PYTHONPATH=/opt/torch:/mnt/host/src PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export OMP_NUM_THREADS=$THREADS
stamp() { echo "$1 $(cut -d' ' -f1 /proc/uptime)" >> "$OUT/uptimes.txt"; }

# torch's version from its install record: an `import torch` costs minutes under TCG
{ uname -a; python3 --version; ls -d /opt/torch/torch-*.dist-info | sed 's#.*/##; s/\.dist-info$//'; } > "$OUT/guest.txt" 2>&1
case $PHASE in
    full) export EDGETRGL_FAULT_COUNTS=$OUT/faults.json ;;
    cut) export EDGETRGL_STALL_AT=$STALL_AT ;;
    resume)  # what the cut left (after ext4's journal replay at mount); the host checks the checkpoints
        { ls -la --time-style=full-iso "$RUN"; echo; ls -la "$RUN/cache" 2>&1; } > "$OUT/run-at-boot.txt" 2>&1
        mkdir -p "$OUT/at-boot" && cp "$RUN"/checkpoint.pt* "$OUT/at-boot/" 2>/dev/null ;;
esac
stamp train
python3 -m edgetrgl train --config /mnt/host/src/benchmarks/aarch64/system/pi4.toml --cache disk \
    --out "$RUN" --auto-resume > "$OUT/train.log" 2>&1
echo $? > "$OUT/train.rc"
stamp trained
ls -la --time-style=full-iso "$RUN" > "$OUT/run-at-end.txt" 2>&1
cp "$RUN/model.pt" "$RUN/summary.json" "$OUT/" 2>/dev/null
sync
