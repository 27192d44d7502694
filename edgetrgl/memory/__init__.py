"""Memory measurement: tensor level (MemTracker, fake-tensor estimates), process RSS, device memory."""

from edgetrgl.memory.device import (device_memory_snapshot, host_memory, is_jetson, nvml_devices, parse_meminfo,
                                    parse_tegrastats, tegrastats_sample)
from edgetrgl.memory.estimate import estimate_parallel, estimate_sequential
from edgetrgl.memory.process import RssBaseline, peak_rss_bytes, reset_peak_rss, rss_bytes, run_fresh, worker_main
from edgetrgl.memory.tensor import TensorPeak, cuda_peaks, track_peak

__all__ = [
    "RssBaseline", "TensorPeak", "cuda_peaks", "device_memory_snapshot", "estimate_parallel", "estimate_sequential",
    "host_memory", "is_jetson", "nvml_devices", "parse_meminfo", "parse_tegrastats", "peak_rss_bytes",
    "reset_peak_rss", "rss_bytes", "run_fresh", "tegrastats_sample", "track_peak", "worker_main",
]
