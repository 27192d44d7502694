"""Worker for :func:`edgetrgl.devices.footprint.measure_runtime_footprint`: runs in a fresh interpreter."""

from __future__ import annotations

from typing import Any

from edgetrgl.devices.footprint import current_footprint


def _measure(payload: dict[str, Any]) -> dict[str, Any]:
    """Import torch and the package, build the model, report this process's footprint."""
    import torch

    from edgetrgl.models import create_model

    net = create_model(payload["model"], in_channels=payload["in_channels"], num_classes=payload["num_classes"],
                       image_size=payload["image_size"], **payload["model_options"])
    if payload["device"] != "cpu":
        net.to(torch.device(payload["device"]))
        torch.zeros(1, device=payload["device"])  # make sure the context exists
    return current_footprint().to_dict()


if __name__ == "__main__":
    import sys

    from edgetrgl.memory.process import worker_main

    sys.exit(worker_main(_measure))
