# Second boot of the power-cut case: resume the run the first boot left.
ls -la "$RUNS/resume" > "$OUT/run-folder-at-boot.txt" 2>&1
step resume 5400 "${E[@]}" train --resume "$RUNS/resume"
mkdir -p "$OUT/run" && cp "$RUNS/resume"/*.json* "$OUT/run/" 2>/dev/null
