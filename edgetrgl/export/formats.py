"""Writers and readers of the three export formats, by name.

Every format carries the model's metadata (:data:`METADATA_FORMAT` JSON: classes, image size,
channels, normalisation) inside the file, so one file is all a deployment needs:
TorchScript and pt2 as an extra file ``edgetrgl.json`` in their archive, ONNX as the model's
``metadata_props`` entry ``edgetrgl``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from edgetrgl.errors import UserError

METADATA_NAME = "edgetrgl.json"
ONNX_EXTRA = "ONNX export needs the onnx extra: pip install 'edgetrgl[onnx]'"
Runner = Callable[[torch.Tensor], torch.Tensor]  # images (N, C, H, W) on 0..1 -> logits (N, classes)


@dataclass(frozen=True)
class ExportFormat:
    """One format: how to write a model, how to load it back as a runner, its usual suffix."""

    name: str
    suffix: str
    write: Callable[[nn.Module, torch.Tensor, Path, dict[str, Any]], None]
    load: Callable[[Path], tuple[Runner | None, dict[str, Any]]]
    runtime: str  # what runs it when loaded back (for the check's report)


@contextlib.contextmanager
def _quiet_deprecations():
    # torch >= 2.9 marks torch.jit as deprecated; it still works and is what most deployments load
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


# ---- TorchScript ---------------------------------------------------------------------------------
def _write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any]) -> None:
    with _quiet_deprecations(), torch.no_grad():
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(path), _extra_files={METADATA_NAME: json.dumps(meta)})


def _load_torchscript(path: Path) -> tuple[Runner, dict[str, Any]]:
    extra = {METADATA_NAME: ""}
    with _quiet_deprecations():
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return _no_grad(module), _parse_meta(extra[METADATA_NAME], path)


# ---- pt2 (torch.export) --------------------------------------------------------------------------
def _batch_dim() -> dict[int, Any]:
    return {0: torch.export.Dim("batch", min=1, max=1 << 16)}


def _write_pt2(model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any]) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=(_batch_dim(),))
    torch.export.save(program, str(path), extra_files={METADATA_NAME: json.dumps(meta)})


def _load_pt2(path: Path) -> tuple[Runner, dict[str, Any]]:
    extra = {METADATA_NAME: ""}
    program = torch.export.load(str(path), extra_files=extra)
    return _no_grad(program.module()), _parse_meta(extra[METADATA_NAME], path)


# ---- ONNX ----------------------------------------------------------------------------------------
def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, Any]) -> None:
    try:
        import onnx
    except ImportError:
        raise UserError(ONNX_EXTRA) from None
    names = dict(input_names=["images"], output_names=["logits"])
    params = inspect.signature(torch.onnx.export).parameters
    if "dynamo" in params:  # torch >= 2.5: the torch.export-based exporter (needs onnxscript)
        try:
            import onnxscript  # noqa: F401
        except ImportError:
            raise UserError(ONNX_EXTRA) from None
        options = dict(dynamo=True, dynamic_shapes=(_batch_dim(),), verbose=False)
        if "external_data" in params:
            options["external_data"] = False  # one self-contained file
        with contextlib.redirect_stdout(io.StringIO()), _quiet_deprecations():  # it prints its progress
            torch.onnx.export(model, (example,), str(path), **names, **options)
    else:  # torch 2.4: the TorchScript-based exporter
        torch.onnx.export(model, (example,), str(path), **names, opset_version=17,
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"edgetrgl": json.dumps(meta)})
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def _load_onnx(path: Path) -> tuple[Runner | None, dict[str, Any]]:
    """The runner is None when onnxruntime is not installed (the file is still read for metadata)."""
    try:
        import onnx
    except ImportError:
        raise UserError(ONNX_EXTRA) from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not ONNX
        raise UserError(f"{path} is not a model file: neither a TorchScript or pt2 archive nor an ONNX model ("
                        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    props = {p.key: p.value for p in proto.metadata_props}
    meta = _parse_meta(props.get("edgetrgl", ""), path)
    try:
        import onnxruntime
    except ImportError:
        return None, meta
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(["logits"], {"images": images.contiguous().numpy()})[0])

    return run, meta


FORMATS: dict[str, ExportFormat] = {
    "torchscript": ExportFormat("torchscript", ".ts", _write_torchscript, _load_torchscript, "torch.jit.load"),
    "onnx": ExportFormat("onnx", ".onnx", _write_onnx, _load_onnx, "onnxruntime"),
    "pt2": ExportFormat("pt2", ".pt2", _write_pt2, _load_pt2, "torch.export.load"),
}


def get_format(name: str) -> ExportFormat:
    """The format called ``name``.

    Raises:
        UserError: an unknown name.
    """
    if name not in FORMATS:
        raise UserError(f"unknown export format {name!r}; choose one of: {', '.join(FORMATS)}")
    return FORMATS[name]


def detect_format(path: Path) -> ExportFormat:
    """Which format a model file holds, from its content: TorchScript and pt2 are zip archives
    (TorchScript's holds ``code/``), ONNX is a protobuf.

    Raises:
        UserError: the file does not exist or is none of the three.
    """
    if not path.is_file():
        raise UserError(f"{path}: no such model file or run folder")
    if not zipfile.is_zipfile(path):
        with path.open("rb") as fh:
            first = fh.read(1)
        if first != b"\x08":  # an ONNX ModelProto starts with its ir_version field (tag 0x08)
            raise UserError(f"{path} is not a model file: neither a TorchScript or pt2 archive nor an ONNX model")
        return FORMATS["onnx"]
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any("/code/" in n for n in names):
        return FORMATS["torchscript"]
    if any(n.endswith("/archive_format") for n in names):  # torch.export.save's marker
        return FORMATS["pt2"]
    # another program's zip: torch.export.load would log its own error line before ours
    raise UserError(f"{path} is not a model file: a zip archive, but neither TorchScript nor pt2 (it holds "
                    f"{names[0] if names else 'nothing'!r})")


def load_exported(path: str | Path) -> tuple[Runner | None, dict[str, Any], ExportFormat]:
    """Load a file written by :func:`edgetrgl.export_run` with its own runtime.

    Returns:
        ``(runner, metadata, format)``: ``runner(images) -> logits`` (None for ONNX without
        onnxruntime).

    Raises:
        UserError: missing, unreadable or not an edgetrgl export.
    """
    path = Path(path)
    fmt = detect_format(path)
    try:
        runner, meta = fmt.load(path)
    except UserError:
        raise
    except Exception as exc:  # each runtime has its own exception types for a corrupt file
        raise UserError(f"{path} cannot be loaded as {fmt.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return runner, meta, fmt


def _no_grad(module: Callable) -> Runner:
    def run(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return module(images)

    return run


def _parse_meta(text: str | bytes, path: Path) -> dict[str, Any]:
    from edgetrgl.export.early_exit import METADATA_FORMAT

    try:
        meta = json.loads(text) if text else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        raise UserError(f"{path} has no edgetrgl metadata: export it with `edgetrgl export`")
    return meta
