#!/bin/bash
# PID 1 of the emulated Pi 4 (the kernel's init=; no systemd, no network), installed as
# /sbin/edgetrgl-init by run.sh. Disks in QEMU's order: vda the root (qcow2 overlay), vdb torch's
# site-packages (read-only), vdc the data disk (ext4, no host caching) that holds the run folder.
# Runs the host's job.sh from the 9p share, then powers off (unless the host cuts the power first).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root

on() { mountpoint -q "$2" || mount "$@"; }   # the initrd may have moved /dev already
say() { echo "edgetrgl-init: $*" > /dev/console; }

on -t proc proc /proc
on -t sysfs sysfs /sys
on -t devtmpfs devtmpfs /dev
mount -o remount,rw /
on -t tmpfs tmpfs /run
on -t tmpfs -o size=256m tmpfs /tmp
echo 1 > /proc/sys/kernel/sysrq

modprobe -a 9pnet_virtio 9p 2>/dev/null
mkdir -p /mnt/host /opt/torch /data
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=none host /mnt/host; then
    say "no 9p share: nothing to run"; echo o > /proc/sysrq-trigger
fi
mount -o ro /dev/vdb /opt/torch
mount -t ext4 /dev/vdc /data   # a power cut left its journal to replay: the kernel does it here

out=/mnt/host/out
mkdir -p "$out"
cat /proc/uptime > "$out/boot.uptime"   # seconds from kernel start to here
say "running job.sh"
bash /mnt/host/job.sh > "$out/job.log" 2>&1 < /dev/null
echo $? > "$out/job.rc"
dmesg > "$out/dmesg.txt" 2>&1
umount /data
sync
umount /mnt/host 2>/dev/null
say "powering off"
echo o > /proc/sysrq-trigger
sleep 60
