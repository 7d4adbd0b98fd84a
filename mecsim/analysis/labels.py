"""Human names with units for the dotted scenario keys and statistics that figures and tables show.

Example:
    >>> from mecsim.analysis.labels import axis_label
    >>> axis_label("devices.0.arrivals.rate_per_s")
    'arrival rate per device (1/s)'
    >>> axis_label("servers.1.slots")
    'slots of server 1'
"""

from __future__ import annotations

import re

__all__ = ["axis_label", "stat_label", "KEY_NAMES"]

#: Dotted scenario keys (list indices written ``N``) -> their name with its unit.
KEY_NAMES = {
    "devices.N.arrivals.rate_per_s": "arrival rate per device (1/s)",
    "devices.N.count": "devices in group {0}",
    "devices.N.tx_power_dbm": "transmit power (dBm)",
    "devices.N.placement.distance_m": "device distance (m)",
    "devices.N.mobility.speed_mps": "device speed (m/s)",
    "devices.N.workload.N.deadline_s": "deadline (s)",
    "devices.N.workload.N.input_bits": "input size (bit)",
    "devices.N.workload.N.steps": "diffusion steps",
    "radio.bandwidth_hz": "uplink bandwidth (Hz)",
    "radio.min_bandwidth_hz": "minimum bandwidth share (Hz)",
    "radio.noise_figure_db": "noise figure (dB)",
    "radio.path_loss.shadowing_std_db": "shadowing std (dB)",
    "radio.downlink.rate_bps": "downlink rate (bit/s)",
    "servers.N.slots": "slots of server {0}",
    "servers.N.backhaul.latency_s": "backhaul latency of server {0} (s)",
    "servers.N.backhaul.rate_bps": "backhaul rate of server {0} (bit/s)",
    "epoch.length_s": "epoch length (s)",
    "epoch.max_tasks": "tasks per epoch (max)",
    "epoch.decision_time.fixed_s": "decision time (s)",
    "duration_s": "simulated time (s)",
    "warmup_s": "warm-up (s)",
}

_STATS = {
    "mean_s": "mean latency (s)",
    "p50_s": "median latency (s)",
    "p95_s": "p95 latency (s)",
    "p99_s": "p99 latency (s)",
    "miss_rate": "deadline-miss rate",
}

_UNITS = (
    ("_per_s", "1/s"),
    ("_hz", "Hz"),
    ("_bps", "bit/s"),
    ("_bits", "bit"),
    ("_dbm", "dBm"),
    ("_db", "dB"),
    ("_mps", "m/s"),
    ("_m", "m"),
    ("_s", "s"),
    ("_j", "J"),
    ("_w", "W"),
)


def axis_label(key: str) -> str:
    """The name with unit of a dotted scenario key; unknown keys get their last part in words
    and a unit read off the suffix (``_s`` seconds, ``_hz`` hertz, ...)."""
    indices = re.findall(r"\.(\d+)(?=\.|$)", key)
    pattern = re.sub(r"\.\d+(?=\.|$)", ".N", key)
    if pattern in KEY_NAMES:
        return KEY_NAMES[pattern].format(*indices)
    last = key.rsplit(".", 1)[-1]
    for suffix, unit in _UNITS:
        if last.endswith(suffix):
            return f"{last.removesuffix(suffix).replace('_', ' ')} ({unit})"
    return last.replace("_", " ")


def stat_label(stat: str) -> str:
    """``mean_s`` -> ``mean latency (s)`` and the like."""
    return _STATS.get(stat, stat.replace("_", " "))
