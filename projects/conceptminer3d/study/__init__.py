"""The training study, evidence for the mined subsets (``tools/benchmark.py``): train and
validate arms (training sets) × seeds through the same code as ``tools/train.py``, or collect
finished runs, and compare them class by class, rarest first. (How fast mining runs is
the package ``conceptminer3d_benchmarks``, ``tools/benchmark_mining.py``; how many rare objects a subset holds,
without training, ``subsets.evaluation``, ``tools/evaluate_selection.py``.)

One concept per module: ``arms`` (arm → config), ``schedule`` (iteration- or epoch-matched),
``retarget`` (configs on other data), ``training``
(training the runs), ``metric_log`` (mmengine's metric logs), ``train_set`` (what an arm trains
on), ``runs`` (finding and reading finished runs), ``summary`` (mean ± std, ratios, class
order), ``sensitivity`` (whether the study can tell data apart at all), ``report`` (terminal
tables), ``plot``, ``cli``.
"""

from .arms import ARMS, BASELINE_ARM, WORLDS, arm_config, arm_of_config
from .metric_log import MetricsNotFoundError, nuscenes_metrics, read_last_val_metrics
from .runs import RunResult, find_runs, load_run
from .schedule import Schedule, apply_schedule, schedule_of
from .summary import aggregate, order_classes, summarize
from .train_set import count_instances, train_set_stats

__all__ = [
    'ARMS',
    'BASELINE_ARM',
    'MetricsNotFoundError',
    'RunResult',
    'Schedule',
    'WORLDS',
    'aggregate',
    'apply_schedule',
    'arm_config',
    'arm_of_config',
    'count_instances',
    'find_runs',
    'load_run',
    'nuscenes_metrics',
    'order_classes',
    'read_last_val_metrics',
    'schedule_of',
    'summarize',
    'train_set_stats',
]
