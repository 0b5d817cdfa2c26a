"""Session configuration and per-run options, with TensorFlow's names (``tw.ConfigProto``...)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GPUOptions:
    allow_growth: bool = False
    per_process_gpu_memory_fraction: float = 0.0
    visible_device_list: str = ""


@dataclass
class GraphOptions:
    """Plan-time graph rewrites; each can be switched off (all equal results by test)."""

    constant_folding: bool = True
    common_subexpression_elimination: bool = True
    remove_identities: bool = True
    fusion: bool = True


@dataclass
class ConfigProto:
    """Session options. ``inter_op_parallelism_threads`` > 1 runs independent ops concurrently;
    ``intra_op_parallelism_threads`` > 0 sizes NumPy's BLAS pool while the session is open
    (process-wide: see ``runtime/blas_threads.py``)."""

    allow_soft_placement: bool = False
    log_device_placement: bool = False
    inter_op_parallelism_threads: int = 1
    intra_op_parallelism_threads: int = 0
    device_count: dict = field(default_factory=dict)
    gpu_options: GPUOptions = field(default_factory=GPUOptions)
    graph_options: GraphOptions = field(default_factory=GraphOptions)
    operation_timeout_in_ms: int = 0


class RunOptions:
    """``tw.RunOptions(trace_level=tw.RunOptions.FULL_TRACE)`` asks a run to record step stats."""

    NO_TRACE, SOFTWARE_TRACE, HARDWARE_TRACE, FULL_TRACE = 0, 1, 2, 3

    def __init__(self, trace_level=0, timeout_in_ms=0, output_partition_graphs=False):
        self.trace_level = trace_level
        self.timeout_in_ms = timeout_in_ms
        self.output_partition_graphs = output_partition_graphs


@dataclass
class NodeExecStats:
    node_name: str
    op_type: str
    all_start_micros: int
    all_end_rel_micros: int
    thread_id: int = 0
    timeline_label: str = ""


@dataclass
class DeviceStepStats:
    device: str
    node_stats: list = field(default_factory=list)


@dataclass
class StepStats:
    dev_stats: list = field(default_factory=list)


class RunMetadata:
    """Filled by ``Session.run(..., run_metadata=md)``: ``md.step_stats`` when tracing."""

    def __init__(self):
        self.step_stats = StepStats()
        self.partition_graphs = []
        self.cost_graph = None
