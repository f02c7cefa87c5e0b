"""dsa110ctl's candidate classes are the science code's (spelt out to keep the CLI fast)."""

from __future__ import annotations

import subprocess
import sys

from dsa110d.operations.records import CANDIDATE_CLASSES
from dsa110d.science.variability.metrics import CLASS_TRANSIENT, CLASS_VARIABLE


def test_candidate_classes_match_the_science() -> None:
    assert CANDIDATE_CLASSES == (CLASS_TRANSIENT, CLASS_VARIABLE)


def test_dsa110ctl_does_not_import_the_science_stack() -> None:
    code = (
        "import sys, dsa110d.cli.ctl\n"
        "print(sorted(m for m in ('pandas', 'scipy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
