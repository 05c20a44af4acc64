"""Microcontroller targets: profiles, the activation-arena memory planner, the fit check.

* :mod:`~microquant.targets.profiles` - built-in TOML profiles (``profiles/*.toml``) or a
  user's file; ``parse_size("64KB")``.
* :mod:`~microquant.targets.planner` - ``plan_memory(graph, "greedy" | "optimized")``.
* :mod:`~microquant.targets.fit` - ``fit_report`` / ``fit_cli``: flash and RAM per target.
* :mod:`~microquant.targets.plot` - memory-over-time PNG.
"""

from microquant.targets.fit import fit_cli, fit_report
from microquant.targets.planner import MemoryPlan, check_plan, plan_memory
from microquant.targets.profiles import (
    Target,
    known_targets,
    load_target,
    load_target_file,
    parse_size,
    resolve_targets,
)

__all__ = [
    "MemoryPlan", "Target", "check_plan", "fit_cli", "fit_report", "known_targets",
    "load_target", "load_target_file", "parse_size", "plan_memory", "resolve_targets",
]
