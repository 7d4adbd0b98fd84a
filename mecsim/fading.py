"""Rayleigh block fading: ``|h_k|^2 ~ Exp(1)`` of every device's coherence blocks
``[k Tc, (k+1) Tc)``, drawn on demand (used by :class:`mecsim.radio.Channel`).

Block k of device d is the k-th draw of a stream keyed by (seed, device): the stream jumps to any
block, so every policy sees the same realisation on the same seed (common random numbers) and
memory stays flat however long the run. Each device keeps one window of drawn blocks, extended as
an upload goes on and drawn anew (at least :data:`_CHUNK` blocks, 0.64 s at Tc = 10 ms) when
asked elsewhere. The devices of a group of more than :data:`~mecsim.streams.PER_DEVICE_MAX`
share one stream per group, interleaved by turns of :data:`_SPAN` blocks (see
:meth:`BlockFading._draw` and the :mod:`mecsim.radio` docstring).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Any

import numpy as np

from mecsim.streams import PER_DEVICE_MAX, Streams, group_key

_CHUNK = 64  # fewest fading blocks drawn at a time for a device (0.64 s at Tc = 10 ms)
_SPAN = 512  # blocks of one device per turn of a large group's interleaved fading stream


def _draw_at(entry: list[Any], at: int, n: int) -> np.ndarray:
    """Exp(1) values of draws ``[at, at + n)`` of the stream ``entry = [generator, position]``."""
    gen, pos = entry
    if at != pos:
        gen.bit_generator.advance((at - pos) % 2**128)
    entry[1] = at + n
    return -np.log1p(-gen.random(n))


class BlockFading:
    """``|h|^2`` of the coherence blocks of every device of a run.

    Args:
        streams: the run's random streams (``fading``, keyed by device or group).
        n_devices: number of devices.
        groups: the sizes of the device groups in device order (summing to ``n_devices``): the
            devices of a group of more than :data:`~mecsim.streams.PER_DEVICE_MAX` share one
            stream. None: every device has its own stream.
        tc: the coherence time (s), for :meth:`forget_before`.
    """

    def __init__(self, streams: Streams, n_devices: int, groups: Sequence[int] | None, tc: float) -> None:
        self.streams = streams
        self.tc = tc
        self._win: dict[int, tuple[int, np.ndarray]] = {}  # device -> (first block, |h|^2 values)
        self._fade_gen: dict[int, list[Any]] = {}  # device -> [generator, position]
        # large groups (more than PER_DEVICE_MAX devices): (first device, count, group index),
        # in device order, and their shared streams: group -> [generator, position]
        self._large: list[tuple[int, int, int]] = []
        self._large_first: list[int] = []
        self._group_gen: dict[int, list[Any]] = {}
        self._chunk_floor = 0
        if groups is not None:
            if sum(groups) != n_devices:
                raise ValueError(f"groups sum to {sum(groups)} devices, not {n_devices}")
            first = 0
            for g, cnt in enumerate(groups):
                if cnt > PER_DEVICE_MAX:
                    self._large.append((first, int(cnt), g))
                    self._large_first.append(first)
                first += int(cnt)

    def fade(self, device: int, blocks: np.ndarray) -> np.ndarray:
        """|h|^2 of device for the given block indices (a few seconds apart at most: every block
        in between is drawn)."""
        lo, hi = int(blocks.min()), int(blocks.max())
        return self.blocks(device, lo, hi)[blocks - lo]

    def block(self, device: int, k: int) -> float:
        """|h|^2 of block k of a device."""
        win = self._win.get(device)
        if win is not None:
            s, arr = win
            if s <= k < s + len(arr):
                return arr[k - s]
        return self.blocks(device, k, k)[0]

    def blocks(self, device: int, lo: int, hi: int) -> np.ndarray:
        """|h|^2 of blocks lo..hi of a device: a view into the device's window of drawn blocks.

        Each device keeps one window (first block, values): a request inside it is a slice; one
        that starts inside it and ends beyond extends it (the blocks before ``lo`` are let go);
        any other request draws a new window of at least ``_CHUNK`` blocks. A long upload in a
        deep fade draws its thousands of blocks a batch at a time, each batch in one call.
        """
        win = self._win.get(device)
        if win is not None:
            s, arr = win
            e = s + len(arr)
            if s <= lo and hi < e:
                return arr[lo - s : hi - s + 1]
            if s <= lo <= e:
                new = self._draw(device, e, max(hi + 1 - e, _CHUNK))
                arr = np.concatenate((arr[lo - s :], new)) if lo < e else new
                self._win[device] = (lo, arr)
                return arr[: hi - lo + 1]
        arr = self._draw(device, lo, max(hi + 1 - lo, _CHUNK))
        self._win[device] = (lo, arr)
        return arr[: hi - lo + 1]

    def _large_group(self, device: int) -> tuple[int, int, int] | None:
        """(first device, count, group) of the device's group if it is large, else None."""
        if not self._large:
            return None
        k = bisect.bisect_right(self._large_first, device) - 1
        if k >= 0 and device < self._large[k][0] + self._large[k][1]:
            return self._large[k]
        return None

    def _draw(self, device: int, k: int, n: int) -> np.ndarray:
        """|h|^2 of blocks k .. k + n - 1 of a device.

        Each block takes one uniform double (one 64-bit output of PCG64), turned into Exp(1) by
        inversion, so a stream can jump straight to any block (``advance``; forwards or
        backwards, as PCG64 is an LCG on 128-bit states and going back m draws is advancing
        2^128 - m): a device idle for hours costs nothing, and a new window no new generator.
        A device of a small group: block k is draw k of its own stream. Device i of a large
        group of n devices: block ``s _SPAN + j`` (j < _SPAN) is draw ``(s n + i) _SPAN + j``
        of the group's stream.
        """
        big = self._large_group(device)
        if big is None:
            entry = self._fade_gen.get(device)
            if entry is None:
                entry = self._fade_gen[device] = [self.streams.keyed("fading", device), 0]
            return _draw_at(entry, k, n)
        first, count, g = big
        entry = self._group_gen.get(g)
        if entry is None:
            entry = self._group_gen[g] = [self.streams.keyed("fading", group_key(g)), 0]
        i = device - first
        parts = []
        while n > 0:  # one draw per turn of the interleaved stream
            turn, j = divmod(k, _SPAN)
            take = min(n, _SPAN - j)
            parts.append(_draw_at(entry, (turn * count + i) * _SPAN + j, take))
            k += take
            n -= take
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def forget_before(self, t: float) -> None:
        """Drop the windows that lie wholly before time t (at most once per ``_CHUNK`` blocks)."""
        floor = int(t / self.tc) // _CHUNK
        if floor > self._chunk_floor:
            self._chunk_floor = floor
            k = floor * _CHUNK
            for d in [d for d, (s, arr) in self._win.items() if s + len(arr) <= k]:
                del self._win[d]
