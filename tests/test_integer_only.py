"""Every registered kernel is exercised by a conformance case, and its run step touches
only integer arrays (checked by tracing every local of every microquant frame)."""

import importlib
import pkgutil
from pathlib import Path

import harness
import pytest

from microquant.runtime.kernel import supported_ops


def _all_cases():
    cases = []
    here = Path(__file__).parent
    for info in pkgutil.iter_modules([str(here)]):
        if info.name.startswith("test_ops_"):
            mod = importlib.import_module(info.name)
            cases.extend(getattr(mod, "CASES", []))
    return cases


CASES = _all_cases()


def test_every_op_has_a_case():
    covered = set()
    for _, build in CASES:
        graph, _ = build()
        covered.update(graph.ops())
    missing = sorted(set(supported_ops()) - covered)
    assert not missing, f"ops without a conformance case: {missing}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_run_is_integer_only(case):
    graph, inputs = case[1]()
    outs = harness.run_reference(graph, inputs, check_integer=True)
    assert all(o.dtype.kind in "iuf" for o in outs)


def test_tracer_catches_float():
    """The tracer itself must fail on a kernel that computes in float."""
    import numpy as np

    from microquant.runtime.kernel import Kernel

    class Bad(Kernel, op="_TEST_BAD_FLOAT"):
        def run(self, params, inputs):
            y = inputs[0].astype(np.float32) * 0.5
            return [y.astype(np.int8)]

    with pytest.raises(harness.IntegerOnlyViolation):
        harness.traced_run(Bad(), None, [np.ones(4, np.int8)])
