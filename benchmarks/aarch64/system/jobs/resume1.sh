# First boot of the power-cut case: the profile run, killed by the host (`quit` on the QEMU monitor)
# once module 1 has finished; the run folder stays on the root disk for the second boot.
board_facts
step killed 5400 "${E[@]}" train --config "$SYS/pi4.toml" --device-profile rpi4-2gb --out "$RUNS/resume" --overwrite
