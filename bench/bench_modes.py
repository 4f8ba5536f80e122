"""Speed of the vectorized decoupled-mode integrator against one ``solve_ivp`` call per trajectory.

Prints one ratio measured in one run (these machines are noisy, so no absolute target is asserted):

    python bench/bench_modes.py              # 10,000 initial conditions, the full loop
    python bench/bench_modes.py --loop 1000  # loop over a random subset, time scaled to n

Both sides use the same solver (RK45), tolerances and end time; their final states must agree to 1e-6.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ssltheory.theory import integrate, modes
from ssltheory.theory.params import ModeParams


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="initial conditions (default 10000)")
    ap.add_argument("--loop", type=int, default=0, help="trajectories for the loop (default: all n)")
    ap.add_argument("--t-end", type=float, default=100.0, help="end time (default 100)")
    ap.add_argument("--json", default="", help="also write the numbers to this JSON file")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    params = ModeParams(alpha_p=1.0, eta=0.04, sigma2=0.5, beta=0.4, ema=True)
    n = args.n
    y0 = modes.pack(rng.uniform(0.0, 1.5, n), rng.uniform(0.0, 2.0, n), rng.uniform(0.0, 1.0, n))
    field = modes.mode_field(params)

    t0 = time.perf_counter()
    batch = integrate.ode(field, y0, args.t_end, samples=2)
    t_vec = time.perf_counter() - t0

    m = args.loop or n
    idx = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
    finals = np.empty((3, m))
    t0 = time.perf_counter()
    for k, i in enumerate(idx):
        finals[:, k] = integrate.ode(field, y0[:, i], args.t_end, samples=2).final
    t_loop = (time.perf_counter() - t0) * n / m

    err = float(np.max(np.abs(batch.final[:, idx] - finals)))
    ratio = t_loop / t_vec
    result = {"n": n, "looped": int(m), "vectorized_s": t_vec, "loop_s_for_n": t_loop, "speedup": ratio,
              "max_abs_diff_final_state": err, "target_speedup": 50.0, "target_diff": 1e-6}
    print(f"vectorized: {n} trajectories in {t_vec:.2f} s")
    print(f"loop:       {m} solve_ivp calls, {t_loop:.1f} s for {n}" + (" (scaled)" if m < n else ""))
    print(f"max |difference| of final states: {err:.2e} (target <= 1e-6)")
    print(f"speedup ratio: {ratio:.1f}x (target >= 50x)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
