"""Side-by-side comparisons of edgetrgl against end-to-end backprop: peak memory, RSS, speed.

    from edgetrgl.bench import BenchSetting, parse_methods, run_bench
    report = run_bench(BenchSetting(model="resnet20"), parse_methods("e2e,checkpoint"))
"""

from edgetrgl.bench.compare import add_ratios, run_bench
from edgetrgl.bench.pareto import mark_front, pareto_front
from edgetrgl.bench.report import bench_table, write_json, write_plot
from edgetrgl.bench.setting import BASELINES, OURS, BenchSetting, parse_methods

__all__ = ["BASELINES", "OURS", "BenchSetting", "add_ratios", "bench_table", "mark_front", "pareto_front",
           "parse_methods", "run_bench", "write_json", "write_plot"]
