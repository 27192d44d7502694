#!/bin/bash
# PID 1 of the emulated Pi 4 (the kernel's init=; no systemd, no network). Mounts what a job needs,
# runs the host's job script from the 9p share, saves the kernel log beside its results and powers
# the machine off. Installed as /sbin/edgetrgl-init in the root file system by run.sh.
#   /mnt/host            the host's share (virtio-9p, tag "host"): job.sh, src/, images/, out/
#   /opt/torch-VERSION   each extra disk (vdb, vdc, ...) read-only, by its file-system label
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root

on() { mountpoint -q "$2" || mount "$@"; }   # the initramfs may have moved /proc, /sys, /dev already
say() { echo "edgetrgl-init: $*" > /dev/console; }

on -t proc proc /proc
on -t sysfs sysfs /sys
on -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm && on -t devpts devpts /dev/pts && on -t tmpfs tmpfs /dev/shm
mount -o remount,rw /
on -t tmpfs tmpfs /run
on -t tmpfs -o size=256m tmpfs /tmp
hostname edgetrgl-pi4
echo 1 > /proc/sys/kernel/sysrq

modprobe -a 9pnet_virtio 9p 2>/dev/null
mkdir -p /mnt/host
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none host /mnt/host; then
    say "no 9p share: nothing to run"
    echo o > /proc/sysrq-trigger
fi
for dev in /dev/vd[b-z]; do
    [[ -b $dev ]] || continue
    label=$(blkid -s LABEL -o value "$dev")
    [[ -n $label ]] || continue
    mkdir -p "/opt/$label" && mount -o ro "$dev" "/opt/$label"
done

out=/mnt/host/out
mkdir -p "$out"
date -u +%Y-%m-%dT%H:%M:%SZ > "$out/boot.started"
cat /proc/uptime > "$out/boot.uptime"   # seconds from kernel start to here: the boot's cost under TCG
say "running job.sh"
bash /mnt/host/job.sh > "$out/job.log" 2>&1 < /dev/null
echo $? > "$out/job.rc"
dmesg > "$out/dmesg.txt" 2>&1
sync
umount /mnt/host 2>/dev/null
say "powering off"
echo o > /proc/sysrq-trigger
sleep 60
