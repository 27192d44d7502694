"""Fresh-process worker: ``python -m edgetrgl.bench.worker --payload FILE --out FILE``.

It measures one method. Its RSS baseline is taken after imports and model build (and, on CUDA,
after the CUDA context exists), so the reported ``peak_rss_bytes`` is what the training step adds.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from edgetrgl.bench.methods import measure_method
from edgetrgl.bench.setting import BenchSetting, build_net
from edgetrgl.memory.process import RssBaseline, worker_main


def measure(payload: dict[str, Any]) -> dict[str, Any]:
    """Payload: ``{"setting": BenchSetting.to_dict(), "method": name}``. Returns the method's record."""
    setting = BenchSetting.from_dict(payload["setting"])
    method = payload["method"]
    if "threads" in payload:
        torch.set_num_threads(int(payload["threads"]))
    torch.manual_seed(setting.seed)
    net = build_net(setting, method)
    if setting.device == "cuda":
        torch.zeros(1, device="cuda")  # the CUDA context is part of the baseline, not of the method
    baseline = RssBaseline()
    result = measure_method(setting, method, net, baseline)
    result["method"] = method
    return result


if __name__ == "__main__":
    sys.exit(worker_main(measure))
