"""How fast can an epoch-per-arrival M/M/1 be in SimPy at all? A floor for the engine benchmark.

Run: ``python tests/benchmarks/simpy_floor.py [--rounds 3] [--n 30000]``.

``tests/benchmarks/engine.py`` asks mecsim's ``mm1-v1`` to reach half the speed of bare SimPy's
M/M/1 (one process per customer, ``Resource(capacity=1)``). This script measures, in the same
process and interleaved, what the least an engine of mecsim's shape must do per task costs in
SimPy. It is not mecsim and is not used by it: it is the yardstick for that target. Per task:

* a scheduler process wakes at the arrival (one timeout) and takes the new arrivals
  (``searchsorted`` on the sorted arrival times, as mecsim's intake does);
* a decision at that epoch: the least-backlogged server among the servers (one here);
* the task's records in numpy columns (epoch, server, decision time, service start and end,
  state), an epoch row, and three rows of the server log (dispatch, start, end), as mecsim
  keeps;
* service by one SimPy timeout whose callback ends it and starts the next queued task;
* at the end, the tasks, epochs and server tables as pandas DataFrames.

Nothing else: no deadlines, faults, streaming, radio, backhaul, progress bar or policy
interface. Printed: customers (tasks) per CPU second of bare SimPy and of this floor, with and
without the tables, and the ratios (median of the rounds).
"""

from __future__ import annotations

import argparse
import heapq
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import simpy

sys.path.insert(0, str(Path(__file__).parent))
from engine import bare_simpy_mm1  # noqa: E402


def floor_mm1(
    n: int, lam: float = 0.9, mu: float = 1.0, seed: int = 1, tables: bool = True, keep: dict | None = None
) -> float:
    """Tasks per CPU second of the least epoch-per-arrival M/M/1 (see the module docstring);
    ``keep``, if given, receives the task records (``t_arrival`` and the columns)."""
    rng = np.random.default_rng(seed)
    t_arr = np.cumsum(rng.exponential(1 / lam, n))
    serv = rng.exponential(1 / mu, n)
    cols = {k: np.full(n, np.nan) for k in ("t_decision", "t_service_start", "t_service_end")}
    cols["epoch"] = np.full(n, -1, dtype=np.int64)
    cols["server"] = np.full(n, -1, dtype=np.int64)
    cols["state"] = np.zeros(n, dtype=np.int8)
    log = {
        "t": np.zeros(3 * n),
        "server": np.zeros(3 * n, dtype=np.int64),
        "queue": np.zeros(3 * n, dtype=np.int64),
    }
    log_n = [0]
    epoch_rows: list[tuple[int, float, int]] = []
    env = simpy.Environment()

    class Server:
        def __init__(self, j: int) -> None:
            self.j, self.busy, self.queue, self.work = j, 0, [], 0.0

        def monitor(self) -> None:
            i = log_n[0]
            log["t"][i] = env.now
            log["server"][i] = self.j
            log["queue"][i] = len(self.queue)
            log_n[0] = i + 1

        def arrive(self, tid: int) -> None:
            self.work += float(serv[tid])
            if self.busy:
                heapq.heappush(self.queue, (env.now, tid))
            else:
                self.start(tid)
            self.monitor()

        def start(self, tid: int) -> None:
            self.busy = 1
            cols["t_service_start"][tid] = env.now
            ev = env.timeout(float(serv[tid]))
            ev.callbacks.append(lambda _ev, tid=tid: self.finish(tid))

        def finish(self, tid: int) -> None:
            self.busy = 0
            self.work -= float(serv[tid])
            cols["t_service_end"][tid] = env.now
            cols["state"][tid] = 2
            if self.queue:
                self.start(heapq.heappop(self.queue)[1])
            self.monitor()

    servers = [Server(0)]

    def scheduler():
        arrived = 0
        k = 0
        while arrived < n:
            yield env.timeout(float(t_arr[arrived]) - env.now)
            now = env.now
            upto = int(t_arr.searchsorted(now, side="right"))
            for tid in range(arrived, upto):
                j = min(servers, key=lambda s: s.work).j  # the decision
                cols["epoch"][tid] = k
                cols["server"][tid] = j
                cols["t_decision"][tid] = now
                cols["state"][tid] = 1
                servers[j].monitor()
                servers[j].arrive(tid)
            epoch_rows.append((k, now, upto - arrived))
            arrived = upto
            k += 1

    env.process(scheduler())
    t = time.process_time()
    env.run()
    if tables:
        pd.DataFrame({"t_arrival": t_arr, **cols})
        pd.DataFrame(epoch_rows, columns=["epoch", "t", "n_decided"])
        pd.DataFrame({k: v[: log_n[0]] for k, v in log.items()})
    rate = n / (time.process_time() - t)
    if keep is not None:
        keep.update(cols, t_arrival=t_arr)
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=30000, help="customers (tasks) per run")
    a = ap.parse_args()
    bare, floor, floor_nt = [], [], []
    for r in range(a.rounds):
        bare.append(bare_simpy_mm1(a.n))
        floor.append(floor_mm1(a.n))
        floor_nt.append(floor_mm1(a.n, tables=False))
        print(
            f"round {r + 1}: bare SimPy {bare[-1]:,.0f} customers/s; floor {floor[-1]:,.0f} tasks/s "
            f"(without the tables {floor_nt[-1]:,.0f})"
        )
    b = statistics.median(bare)
    print(f"ratio floor (tables included) / bare SimPy M/M/1 = {statistics.median(floor) / b:.3f}")
    print(f"ratio floor (no tables) / bare SimPy M/M/1 = {statistics.median(floor_nt) / b:.3f}")


if __name__ == "__main__":
    main()
