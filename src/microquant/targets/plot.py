"""Memory-over-time plot: live arena bytes per step for several plans (PNG, Agg backend).

Top panel: bytes occupied by live tensors at each step (one line per plan) with each
plan's arena size dashed. Bottom panel: the layout of the last plan - one rectangle per
tensor spanning its lifetime (x) and its byte range (y).

Example:
    >>> plot_memory({"greedy": g, "optimized": o}, "mem.png", "ResNet-8")   # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

from microquant.errors import MicroquantError
from microquant.targets.planner import MemoryPlan


def plot_memory(plans: dict[str, MemoryPlan], path: str | Path, title: str = "") -> Path:
    """Write the PNG to ``path`` and return it (needs matplotlib: the ``plots`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Rectangle
    except ImportError:
        raise MicroquantError("plotting needs matplotlib: pip install microquant[plots]") \
            from None
    if not plans:
        raise MicroquantError("no memory plans to plot")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), height_ratios=[1, 1.3])
    colors = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
    for k, (label, plan) in enumerate(plans.items()):
        c = colors[k % len(colors)]
        steps = list(range(len(plan.live_bytes)))
        top.step(steps, [b / 1024 for b in plan.live_bytes], where="mid", color=c,
                 label=f"{label}: arena {plan.arena_size / 1024:.1f} KB")
        top.axhline(plan.arena_size / 1024, color=c, linestyle="--", linewidth=0.8)
    top.set_xlabel("step (operator in execution order)")
    top.set_ylabel("live activations (KB)")
    top.set_ylim(bottom=0)
    top.legend(loc="upper right", fontsize=8)
    top.set_title(title or "activation memory over time")

    label, plan = list(plans.items())[-1]
    for i, (name, (a, b)) in enumerate(sorted(plan.lifetimes.items(),
                                              key=lambda kv: plan.offsets[kv[0]])):
        size = plan.sizes[name]
        if not size:
            continue
        bottom.add_patch(Rectangle((a - 0.4, plan.offsets[name] / 1024), b - a + 0.8,
                                   size / 1024, alpha=0.45, edgecolor="black", linewidth=0.4,
                                   facecolor=colors[(i % 3) + 1]))
    bottom.set_xlim(-1, max(len(plan.order), 1))
    bottom.set_ylim(0, max(plan.arena_size, 1) / 1024)
    bottom.set_xlabel("step")
    bottom.set_ylabel("arena offset (KB)")
    bottom.set_title(f"{label} layout (overlapping rectangles = allowed in-place reuse)",
                     fontsize=9)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
