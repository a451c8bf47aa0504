"""``acpd`` under a profiler that a signal switches: SIGUSR1 starts cProfile on the event loop's
thread, SIGUSR2 stops it and writes its stats to the file ``ACPD_BENCH_PROFILE`` names. The rest
of the arguments are acpd's (``prompt_profile.py`` starts ``acpd serve`` through it), so a profile
covers only the prompts a benchmark sends between the two signals, not the start or the warm-ups.

    ACPD_BENCH_PROFILE=/tmp/p.out python benchmarks/_profiled.py serve --port 0 --port-file F
"""

from __future__ import annotations

import cProfile
import os
import runpy
import signal
import sys
from types import FrameType

_profile = cProfile.Profile()


def _start(signum: int, frame: FrameType | None) -> None:
    _profile.enable()


def _stop(signum: int, frame: FrameType | None) -> None:
    _profile.disable()
    target = os.environ["ACPD_BENCH_PROFILE"]
    _profile.dump_stats(target + ".part")
    os.replace(target + ".part", target)  # whole, or not there: the benchmark waits for it


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    sys.argv = ["acpd", *sys.argv[1:]]
    runpy.run_module("acpd", run_name="__main__", alter_sys=True)
