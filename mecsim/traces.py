"""Recording: growable numpy column buffers for tasks, server events and epochs.

Records are columns of numpy arrays, not Python objects per event, so a run of a million tasks
costs a few hundred bytes per task. :func:`tasks_frame` and friends turn them into pandas
DataFrames with the documented column names.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

#: Task status codes (internal) and their names in the ``status`` column.
WAITING, DISPATCHED, SERVED, DROPPED = 0, 1, 2, 3
STATUS_NAMES = ("completed", "dropped", "in_flight")

#: Drop reasons (``drop_reason`` column).
DROP_REASONS = ("", "policy", "deadline_expired_waiting", "deadline_expired_queue", "server_failure")

#: Events of the faults table.
FAULT_EVENTS = ("server_down", "server_up", "channel_down", "channel_up", "backhaul_degraded",
                "backhaul_restored", "task_redispatched", "task_dropped")


class Columns:
    """A set of named numpy columns that grow by doubling."""

    def __init__(self, spec: dict[str, tuple[Any, Any]], capacity: int = 1024) -> None:
        self.spec = spec
        self.n = 0
        self.cap = capacity
        self.cols: dict[str, np.ndarray] = {
            k: np.full(capacity, fill, dtype=dt) for k, (dt, fill) in spec.items()
        }

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more rows."""
        need = self.n + extra
        if need <= self.cap:
            return
        cap = self.cap
        while cap < need:
            cap *= 2
        for k, (dt, fill) in self.spec.items():
            new = np.full(cap, fill, dtype=dt)
            new[: self.n] = self.cols[k][: self.n]
            self.cols[k] = new
        self.cap = cap

    def append_many(self, **values: np.ndarray) -> tuple[int, int]:
        """Append rows given as equal-length arrays; returns the (start, stop) row range."""
        m = len(next(iter(values.values())))
        self.reserve(m)
        a, b = self.n, self.n + m
        for k, v in values.items():
            self.cols[k][a:b] = v
        self.n = b
        return a, b

    def view(self) -> dict[str, np.ndarray]:
        """The filled part of every column (views, not copies)."""
        return {k: v[: self.n] for k, v in self.cols.items()}

    def nbytes(self) -> int:
        """Memory held by the buffers."""
        return sum(v.nbytes for v in self.cols.values())


TASK_COLUMNS: dict[str, tuple[Any, Any]] = {
    "device": (np.int32, -1),
    "model": (np.int16, -1),
    "input_bits": (np.float64, np.nan),
    "output_bits": (np.float64, np.nan),
    "steps": (np.int32, 0),
    "deadline": (np.float64, np.inf),
    "service_factor": (np.float64, 1.0),
    "epoch": (np.int64, -1),
    "server": (np.int16, -1),
    "bandwidth_hz": (np.float64, np.nan),
    "t_arrival": (np.float64, np.nan),
    "t_decision": (np.float64, np.nan),
    "t_upload_start": (np.float64, np.nan),
    "t_upload_end": (np.float64, np.nan),
    "t_server_arrival": (np.float64, np.nan),
    "t_service_start": (np.float64, np.nan),
    "t_service_end": (np.float64, np.nan),
    "t_complete": (np.float64, np.nan),
    "state": (np.int8, WAITING),
    "drop_reason": (np.int8, 0),
    "energy_tx_j": (np.float64, 0.0),
    "energy_server_j": (np.float64, 0.0),
    "attempts": (np.int16, 0),
}

FAULT_COLUMNS: dict[str, tuple[Any, Any]] = {
    "t": (np.float64, np.nan),
    "event": (np.int8, 0),
    "server": (np.int16, -1),
    "device": (np.int32, -1),
    "task_id": (np.int64, -1),
}

SERVER_COLUMNS: dict[str, tuple[Any, Any]] = {
    "t": (np.float64, np.nan),
    "server": (np.int16, -1),
    "queue_len": (np.int32, 0),
    "busy_slots": (np.int16, 0),
    "in_transit": (np.int32, 0),
}

_T_COLS = ("t_decision", "t_upload_start", "t_upload_end", "t_server_arrival",
           "t_service_start", "t_service_end", "t_complete")


def tasks_frame(cols: dict[str, np.ndarray], model_names: tuple[str, ...],
                server_names: tuple[str, ...], t_end: float) -> pd.DataFrame:
    """The tasks table as seen at ``t_end``: times after the end are NaN (not yet happened)."""
    n = len(cols["device"])
    df = pd.DataFrame({"task_id": np.arange(n, dtype=np.int64)})
    df["device"] = cols["device"].astype(np.int64)
    df["model"] = pd.Categorical.from_codes(cols["model"].astype(np.int64),
                                            categories=list(model_names))
    for k in ("input_bits", "output_bits"):
        df[k] = cols[k]
    df["steps"] = cols["steps"].astype(np.int64)
    srv = cols["server"].astype(np.int64)
    df["server"] = pd.Categorical.from_codes(np.where(srv >= 0, srv, -1),
                                             categories=list(server_names))
    df["server_index"] = srv
    df["epoch"] = cols["epoch"]
    df["bandwidth_hz"] = cols["bandwidth_hz"]
    df["t_arrival"] = cols["t_arrival"]
    for k in _T_COLS:
        v = cols[k].copy()
        v[v > t_end] = np.nan
        df[k] = v
    state = cols["state"]
    dropped = state == DROPPED
    completed = ~dropped & (cols["t_complete"] <= t_end)
    status = np.where(completed, 0, np.where(dropped, 1, 2))
    df["status"] = pd.Categorical.from_codes(status, categories=list(STATUS_NAMES))
    df["drop_reason"] = pd.Categorical.from_codes(cols["drop_reason"].astype(np.int64),
                                                  categories=list(DROP_REASONS))
    df["latency"] = np.where(completed, cols["t_complete"] - cols["t_arrival"], np.nan)
    deadline = cols["deadline"]
    df["deadline"] = deadline
    met = pd.array(np.where(completed, cols["t_complete"] <= deadline, False), dtype="boolean")
    met[~completed & ~dropped] = pd.NA  # not decided yet
    df["deadline_met"] = met
    df["energy_tx_j"] = np.where(np.isnan(df["t_upload_end"]), 0.0, cols["energy_tx_j"])
    df["energy_server_j"] = np.where(np.isnan(df["t_service_end"]), 0.0, cols["energy_server_j"])
    df["service_factor"] = cols["service_factor"]
    df["redispatches"] = cols["attempts"].astype(np.int64)
    return df


def faults_frame(cols: dict[str, np.ndarray], server_names: tuple[str, ...]) -> pd.DataFrame:
    """The faults table: one row per fault event and per task it redispatched or dropped."""
    df = pd.DataFrame({"t": cols["t"]})
    df["event"] = pd.Categorical.from_codes(cols["event"].astype(np.int64),
                                            categories=list(FAULT_EVENTS))
    srv = cols["server"].astype(np.int64)
    df["server"] = pd.Categorical.from_codes(srv, categories=list(server_names))
    df["device"] = cols["device"].astype(np.int64)
    df["task_id"] = cols["task_id"]
    return df


def servers_frame(cols: dict[str, np.ndarray], server_names: tuple[str, ...]) -> pd.DataFrame:
    """The servers table: one row per change of a server's queue, busy slots or transit count."""
    df = pd.DataFrame({"t": cols["t"]})
    df["server"] = pd.Categorical.from_codes(cols["server"].astype(np.int64),
                                             categories=list(server_names))
    df["queue_len"] = cols["queue_len"].astype(np.int64)
    df["busy_slots"] = cols["busy_slots"].astype(np.int64)
    df["in_transit"] = cols["in_transit"].astype(np.int64)
    df["in_system"] = df["queue_len"] + df["busy_slots"]
    return df
