"""Metrics: one small logger interface over sinks (habit 16: the loops call the interface, never a sink).

    MetricsWriter   log(record, echo=...), warn, progress, tell, close; numbers every record (its step)
    JsonLines       metrics.jsonl in the run folder, one JSON record a line (what scripts read back)
    ConsoleSink     the echoed lines, warnings and progress bars (rich)
    TensorBoard     event files in the run folder's tb/ (``--log tensorboard``; the tensorboard extra)

The sinks ``--log`` may name are registered (:mod:`edgetrgl.metrics.sinks`: name, builder, the files
each owns in the run folder); :func:`make_logger` builds the run's writer from ``cfg.loggers``.
"""

from edgetrgl.metrics.console import ConsoleSink
from edgetrgl.metrics.jsonl import JsonLines
from edgetrgl.metrics.logger import MetricsWriter, make_logger
from edgetrgl.metrics.sinks import Sink, SinkKind, check_sinks, get_sink, sink_names

__all__ = ["ConsoleSink", "JsonLines", "MetricsWriter", "Sink", "SinkKind", "check_sinks", "get_sink", "make_logger",
           "sink_names"]
