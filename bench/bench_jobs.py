"""``experiment --jobs N`` against one cell after another: wall time of the same recipe's runs, in one script.

A recipe of ``--cells`` digits cells (Table 3's four linear and 2-layer cells, then more seeds of them), each capped at
``--steps`` steps, is run twice into fresh folders: with ``jobs=1`` (the runs in this process, torch's default
threads) and with ``jobs=N`` (N spawned processes, cores // N threads each), alternating which goes first over
``--repeats`` rounds. Prints each round's two wall times and the ratio sequential / parallel (the speed-up), and the
median ratio. Target on the 2-core box: >= 1.5x with ``--jobs 2`` (a small run is about as fast on one core as on
two, so two at once should nearly halve the time).

    python bench/bench_jobs.py                        # 4 runs of 300 steps, --jobs = the cores, 2 rounds
    python bench/bench_jobs.py --jobs 2 --cells 6 --steps 200 --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from ssltheory.experiments.parallel import cores
from ssltheory.experiments.recipes import RECIPES, Recipe
from ssltheory.experiments.run import run_recipe


def recipe(cells: int) -> tuple[Recipe, int]:
    """Table 3's cells, repeated over seeds until ``cells`` runs: (the recipe, the number of seeds)."""
    base = RECIPES["table3"]
    names = list(base.cells)[: min(cells, len(base.cells))]
    seeds = -(-cells // len(names))
    return Recipe("bench-jobs", base.result, base.paper_numbers, {n: base.cells[n] for n in names}), seeds


def timed(r: Recipe, seeds: int, steps: int, jobs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_recipe(r, "cpu", Path(tmp), max_steps=steps, seeds=seeds, jobs=jobs)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=cores(), help="processes of the parallel side [the cores]")
    ap.add_argument("--cells", type=int, default=4, help="runs per side [4]")
    ap.add_argument("--steps", type=int, default=300, help="steps per run [300]")
    ap.add_argument("--repeats", type=int, default=2, help="rounds, alternating which side goes first [2]")
    args = ap.parse_args()
    r, seeds = recipe(args.cells)
    runs = len(r.cells) * seeds
    print(f"{runs} runs of {args.steps} steps (digits, cpu scale), --jobs 1 vs --jobs {args.jobs}, {cores()} cores")
    ratios = []
    for k in range(args.repeats):
        order = (1, args.jobs) if k % 2 == 0 else (args.jobs, 1)
        t = {jobs: timed(r, seeds, args.steps, jobs) for jobs in order}
        ratios.append(t[1] / t[args.jobs])
        print(f"round {k}: sequential {t[1]:.1f} s, --jobs {args.jobs} {t[args.jobs]:.1f} s, "
              f"speed-up {ratios[-1]:.2f}x")
    print(f"median speed-up of --jobs {args.jobs}: {statistics.median(ratios):.2f}x (target >= 1.5x at --jobs 2)")


if __name__ == "__main__":
    main()
