# The run that does not fit: e2e ResNet-110 at batch 512, first as the profile plans it (refused),
# then without the profile (the guest kernel decides). dmesg (saved by init) has the OOM killer's lines.
board_facts
step oom-planned 3600 "${E[@]}" train --config "$SYS/oom.toml" --device-profile rpi4-2gb --out "$RUNS/oom-planned" --overwrite
step oom 3600 "${E[@]}" train --config "$SYS/oom.toml" --out "$RUNS/oom" --overwrite
