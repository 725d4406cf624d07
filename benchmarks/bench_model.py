"""Model cost (paper Table 3): a script front end of ``burstjdd bench`` (the measurement,
tiling and FLOP-counting notes live in :mod:`burstjdd.eval.benchmark`).

    python benchmarks/bench_model.py [--presets paper,compact] [--sizes 256x256,720p]
                                     [--repeat 3] [--tile 128] [--tile-batch 1] [--threads N]
"""

from __future__ import annotations

import sys

from burstjdd.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--no-loop", *sys.argv[1:]]))
