"""Export for inference: a run's early-exit network as TorchScript, ONNX or pt2, checked; predict.

    result = export_run("runs/latest", exit="best", format="torchscript", out="model.ts")
    assert result.check.passed
    for p in predict("model.ts", ["digit.png"]):
        print(p.line())
"""

from edgetrgl.export.api import ExportFailed, ExportResult, export_run
from edgetrgl.export.check import CheckResult
from edgetrgl.export.early_exit import EarlyExitNet, build_early_exit
from edgetrgl.export.formats import FORMATS, load_exported
from edgetrgl.export.predict import Prediction, load_classifier, predict

__all__ = ["CheckResult", "EarlyExitNet", "ExportFailed", "ExportResult", "FORMATS", "Prediction", "build_early_exit",
           "export_run", "load_classifier", "load_exported", "predict"]
