# The whole run on one torch release: board facts, smoke test, `devices detect`, the profile run
# (pi4.toml with --device-profile rpi4-2gb), export and predict on its result.
board_facts
installed
step smoke 1800 python3 "$SRC/benchmarks/aarch64/smoke.py"
step detect 900 "${E[@]}" devices detect
step train 5400 "${E[@]}" train --config "$SYS/pi4.toml" --device-profile rpi4-2gb --out "$RUNS/profile" --overwrite
mkdir -p "$OUT/run" && cp "$RUNS/profile"/*.json* "$OUT/run/" 2>/dev/null
step export 1800 "${E[@]}" export "$RUNS/profile" --out "$RUNS/model.ts" --overwrite
step predict 900 "${E[@]}" predict "$RUNS/model.ts" /mnt/host/images/*.png
