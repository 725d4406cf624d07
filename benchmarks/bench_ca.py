"""Coarse-alignment speed: vectorised DPBM vs the per-candidate loop reference
(:func:`burstjdd.eval.benchmark.compare_ca`: DSNet + matching + selection of one 5-frame burst,
radius 48 full-res px, stride 2 then ±2, propagation, tiles of 64 packed px).

    python benchmarks/bench_ca.py [--repeats 3] [--device cpu] [--sizes 256x256 1280x720]
"""

from __future__ import annotations

import argparse

from burstjdd.eval.benchmark import ca_table, compare_ca, parse_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=["256x256", "1280x720"],
                        help="720p, 1080p, uhd or full-resolution WIDTHxHEIGHT")
    args = parser.parse_args()
    rows = [compare_ca(parse_size(s), repeats=args.repeats, device=args.device)
            for s in args.sizes]
    print("\n".join(ca_table(rows)))


if __name__ == "__main__":
    main()
