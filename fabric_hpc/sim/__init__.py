"""Trace-driven, deterministic cluster simulator driven by :mod:`fabric_hpc.scheduler` policies.

Public surface::

    from fabric_hpc.sim import Simulator, load_trace, summarize, write_results, write_html, gang_workload
    jobs = load_trace("openb:data/traces/alibaba_openb_pod_list_default.csv")
    result = Simulator(open_fabric(), fabric_policy(), jobs).run()
    summarize(result)["mean_jct_s"]

See docs/scheduler.md.
"""

from fabric_hpc.sim.engine import JobRecord, SimResult, Simulator
from fabric_hpc.sim.load import KINDS, load_trace
from fabric_hpc.sim.metrics import jain, summarize
from fabric_hpc.sim.report import comparison_metrics, comparison_rows, write_html
from fabric_hpc.sim.results import load_results, results_dict, write_results
from fabric_hpc.sim.contention import CommProfile, Contention
from fabric_hpc.sim.slurmlog import read_jobcomp, read_sacct
from fabric_hpc.sim.synthetic import GangWorkload, gang_workload
from fabric_hpc.sim.swf import read_swf
from fabric_hpc.sim.traces import Trace, read_openb, read_tiresias

__all__ = ["KINDS", "CommProfile", "Contention", "GangWorkload", "JobRecord", "SimResult", "Simulator", "Trace",
           "comparison_metrics", "comparison_rows", "gang_workload", "jain", "load_results", "load_trace", "read_jobcomp", "read_openb",
           "read_sacct", "read_swf", "read_tiresias", "results_dict", "summarize", "write_html", "write_results"]
