"""Where frozen modules live: on the compute device, in host memory, or on disk.

``bring(k)`` puts module k on the compute device to train it; ``release(k)`` moves it away once it is
frozen and its outputs are cached. With ``disk``, its weights are saved to a file and the module's
tensors are replaced by meta tensors, so they take no host memory either; ``restore_all`` loads
every module back to the CPU at the end of the run (to save and evaluate the whole network).
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgetrgl.modular import ModularNet


class Offloader:
    """Moves modules between the compute device, host memory and disk.

    Args:
        net: the split network.
        device: the compute device.
        mode: ``host`` (frozen modules go to CPU memory), ``disk`` (to files under ``folder``) or
            ``none`` (they stay on the device: needed when the prefix is recomputed every batch).
        folder: where ``disk`` writes module files.
    """

    def __init__(self, net: ModularNet, device: torch.device, mode: str = "host", folder: str | Path | None = None) -> None:
        if mode == "disk" and folder is None:
            raise ValueError("disk offload needs a folder")
        self.net, self.device, self.mode = net, device, mode
        self.folder = Path(folder) / "offload" if folder is not None else None
        self._on_disk: set[int] = set()

    def bring(self, k: int) -> torch.nn.Module:
        """Module k on the compute device, loaded back from disk if needed."""
        self._load(k)
        return self.net.stages[k].to(self.device)

    def release(self, k: int) -> None:
        """Module k is frozen: move it (and its head) off the compute device."""
        if self.mode == "none":
            return
        stage, head = self.net.stages[k], self.net.heads[k]
        head.to("cpu")
        if self.mode == "host":
            stage.to("cpu")
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save({name: t.detach().cpu() for name, t in stage.state_dict().items()}, self._path(k))
        stage.to("meta")  # frees the storage; the structure stays so it can be refilled
        self._on_disk.add(k)

    def keep_on_device(self) -> None:
        """From now on the frozen prefix is recomputed every batch: every module stays on the device."""
        self.mode = "none"
        for k, stage in enumerate(self.net.stages):
            self._load(k)
            stage.to(self.device)

    def stage_state(self, k: int) -> dict[str, torch.Tensor]:
        """Module k's weights, read from its file if it is offloaded to disk (for checkpoints)."""
        if k in self._on_disk:
            return torch.load(self._path(k), map_location="cpu", weights_only=True)
        return self.net.stages[k].state_dict()

    def restore_all(self) -> None:
        """Every module back in host memory (end of run)."""
        for k in sorted(self._on_disk):
            self._load(k)
        if self.folder is not None and self.folder.exists() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def _load(self, k: int) -> None:
        if k not in self._on_disk:
            return
        stage = self.net.stages[k]
        stage.to_empty(device="cpu")
        stage.load_state_dict(torch.load(self._path(k), map_location="cpu", weights_only=True))
        self._path(k).unlink()
        self._on_disk.discard(k)

    def _path(self, k: int) -> Path:
        return self.folder / f"module{k + 1}.pt"
