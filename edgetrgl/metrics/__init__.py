"""Metrics: one small logger interface over sinks (habit 16: the loops call the interface, never a sink).

    MetricsWriter   log(record, echo=...), warn, progress, tell, close; numbers every record (its step)
    JsonLines       metrics.jsonl in the run folder, one JSON record a line (what scripts read back)
    ConsoleSink     the echoed lines, warnings and progress bars (rich)
    TensorBoard     event files in the run folder's tb/ (``--log tensorboard``; the tensorboard extra)

:func:`make_logger` builds the run's writer from ``cfg.loggers``.
"""

from edgetrgl.metrics.console import ConsoleSink
from edgetrgl.metrics.jsonl import JsonLines
from edgetrgl.metrics.logger import MetricsWriter, Sink, check_sinks, make_logger

__all__ = ["ConsoleSink", "JsonLines", "MetricsWriter", "Sink", "check_sinks", "make_logger"]
