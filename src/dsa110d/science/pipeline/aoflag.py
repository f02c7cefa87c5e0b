"""AOFlagger (the ``aoflagger`` program of the Debian package of that name) on Measurement
Sets, with the DSA-110 strategy shipped here (``strategies/dsa110.lua``) or
``flagging.strategy``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from dsa110d.config import Config
from dsa110d.errors import StageError

AOFLAGGER = "aoflagger"
STRATEGY_PACKAGE = "dsa110d.science.pipeline.strategies"
STRATEGY_NAME = "dsa110.lua"


def strategy_path(config: Config) -> Path:
    """The AOFlagger strategy: ``flagging.strategy`` or the one shipped with dsa110d."""
    if config.flagging.strategy:
        return Path(config.flagging.strategy)
    return Path(str(resources.files(STRATEGY_PACKAGE) / STRATEGY_NAME))


def run_aoflagger(ms_paths: Sequence[Path], strategy: Path, threads: int, timeout: float) -> None:
    """AOFlagger on ``ms_paths`` (cross-correlations, column DATA), in place."""
    program = shutil.which(AOFLAGGER)
    if program is None:
        raise StageError("aoflagger is not installed (Debian package aoflagger)")
    command = [program, "-j", str(threads), "-strategy", str(strategy), "-column", "DATA",
               *map(str, ms_paths)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise StageError(f"aoflagger took longer than {timeout:g} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise StageError(f"aoflagger failed ({done.returncode}): {' | '.join(tail)}")
