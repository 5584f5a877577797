"""Pictures of a turn and of a run's history (matplotlib, Agg backend, no display needed).

timeline_png: the ref (what the mouth played) and ear (what the DUT said) waveforms on one
    time axis, with markers for speech end, reply onset, the reply's chunk segments, the
    barge-in onset and the moment the interrupted reply stopped; telemetry stage bars on the
    same axis when the turn has them.
trend_png: TTFA p50/p95 and stop latency p95 over runs (from the history file).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.report.results import TurnRecord

# Envelope points per axis: ~2 per horizontal pixel of a 10-inch, 100-dpi figure. Plotting
# min/max envelopes instead of every sample keeps a 60 s capture at ~0.3 s and ~100 KB.
_ENVELOPE_BINS = 2000


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _envelope(x: np.ndarray, sample_rate_hz: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t_s, lo, hi) of a mono signal in at most `_ENVELOPE_BINS` bins."""
    n = x.shape[0]
    bins = min(_ENVELOPE_BINS, max(1, n))
    per = int(np.ceil(n / bins))
    pad = per * bins - n
    xx = np.concatenate([x, np.full(pad, x[-1] if n else 0.0)]).reshape(bins, per)
    t = (np.arange(bins) * per + per / 2) / sample_rate_hz
    return t, xx.min(axis=1), xx.max(axis=1)


def timeline_png(
    path: str | Path | None,
    capture: str | Path | np.ndarray | tuple[np.ndarray, np.ndarray],
    sample_rate_hz: int | None,
    record: TurnRecord,
) -> bytes:
    """Draw the turn's timeline; write it to `path` (unless None) and return the PNG bytes.

    `capture`: a WAV path, an (n, 2) float array [ref, ear], or a (ref, ear) pair of 1-D
    arrays (a single 1-D array is the ear only);
    `sample_rate_hz` is required for an array and ignored for a path (the file's rate).
    Markers come from `record.metrics` (seconds on the capture timeline), stage bars from
    `record.stage_spans`. The figure is drawn lane by lane: the stages, each channel, then
    the markers across all of them and the title.
    """
    data, sample_rate_hz = _capture_data(capture, sample_rate_hz)
    channels = [("ref (mouth)", data[:, 0])] if data.shape[1] >= 2 else []
    channels.append(("ear (DUT)", data[:, 1] if data.shape[1] >= 2 else data[:, 0]))

    plt = _pyplot()
    spans = list(record.stage_spans)
    labels = list(dict.fromkeys(s[0] for s in spans))
    ratios = ([max(1.0, 0.35 * len(labels))] if labels else []) + [2.0] * len(channels)
    fig, axes = plt.subplots(
        len(ratios),
        1,
        sharex=True,
        figsize=(10, 1.2 + sum(ratios) * 0.9),
        dpi=90,
        gridspec_kw={"height_ratios": ratios, "hspace": 0.08},
    )
    axes = list(np.atleast_1d(axes))
    m = record.metrics

    if labels:
        _stage_lane(axes.pop(0), spans, labels, record.events)
    for ax, (name, x) in zip(axes, channels, strict=True):
        _wave_lane(ax, name, x, sample_rate_hz, m.get("segments") or [])
    _markers(fig, axes, m)

    fig.suptitle(_title(record), fontsize=9, x=0.01, ha="left")
    axes[-1].set_xlabel("capture time (s)", fontsize=8)
    axes[-1].set_xlim(0, data.shape[0] / sample_rate_hz)
    fig.subplots_adjust(left=0.11, right=0.99, top=0.9, bottom=0.1)

    return _png(fig, plt, path)


def _capture_data(
    capture: str | Path | np.ndarray | tuple[np.ndarray, np.ndarray], sample_rate_hz: int | None
) -> tuple[np.ndarray, int]:
    """(samples as (n, channels), sample rate, Hz) of timeline_png's `capture`."""
    if isinstance(capture, str | Path):
        from harness.audiofile import read_audio

        data, sample_rate_hz = read_audio(capture, role="capture")
    else:
        if not sample_rate_hz:
            raise ValueError("timeline_png: sample_rate_hz is required with an array capture")
        if isinstance(capture, tuple | list):  # (ref, ear) as two 1-D arrays
            if len(capture) != 2:
                raise ValueError(f"timeline_png: expected (ref, ear), got {len(capture)} arrays")
            ref, ear = (np.asarray(c, dtype=float).reshape(-1) for c in capture)
            n = min(ref.size, ear.size)
            data = np.column_stack([ref[:n], ear[:n]])
        else:
            data = np.asarray(capture, dtype=float)
        if data.ndim == 2 and data.shape[1] > 8 and data.shape[0] <= 8:
            raise ValueError(
                f"timeline_png: capture of shape {data.shape} looks like (channels, samples); "
                "expected (samples, 2) [ref, ear]"
            )
    if data.ndim == 1:
        data = data[:, None]
    return data, sample_rate_hz


def _stage_lane(ax: Any, spans: list, labels: list[str], events: Sequence[Mapping]) -> None:
    """The telemetry stages as bars, one row a stage, and each event as a faint line."""
    for row, label in enumerate(labels):
        bars = [(a, max(b - a, 1e-3)) for lab, a, b in spans if lab == label]
        ax.broken_barh(bars, (row - 0.35, 0.7), color=f"C{row % 10}", alpha=0.8)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_title("telemetry stages", fontsize=8, loc="left")
    ax.grid(axis="x", alpha=0.3)
    for e in events:
        t = e.get("t_s")
        if isinstance(t, int | float):
            ax.axvline(t, color="0.6", lw=0.5, zorder=0)


def _wave_lane(ax: Any, name: str, x: np.ndarray, sample_rate_hz: int, segments: list) -> None:
    """One channel's envelope; the ear's with the reply's segments shaded."""
    t, lo, hi = _envelope(x, sample_rate_hz)
    ax.fill_between(t, lo, hi, color="0.25", lw=0.3)
    peak = float(max(np.max(np.abs(x)), 1e-6))
    ax.set_ylim(-1.05 * peak, 1.05 * peak)
    ax.set_ylabel(name, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    if name.startswith("ear"):
        for a, b in segments:
            ax.axvspan(a, b, color="tab:green", alpha=0.12, lw=0)


def _markers(fig: Any, axes: list, m: Mapping) -> None:
    """Speech end, reply onset, barge-in onset and the reply's stop as dashed lines across
    every lane, with their legend above the plots."""
    colors = {"speech_end": "tab:blue", "onset": "tab:green", "barge": "tab:orange", "stop": "red"}

    def mark(t: object, color: str, label: str) -> None:
        if isinstance(t, int | float):
            for i, ax in enumerate(axes):
                ax.axvline(float(t), color=color, lw=1.0, ls="--", label=label if i == 0 else None)

    mark(m.get("speech_end_s"), colors["speech_end"], "speech end")
    mark(m.get("reply_onset_s"), colors["onset"], "reply onset")
    barge = m.get("barge_in_onset_s")
    mark(barge, colors["barge"], "barge-in onset")
    stop = m.get("stop_latency_ms")
    if isinstance(barge, int | float) and isinstance(stop, int | float):
        mark(barge + stop / 1000.0, colors["stop"], "reply stopped")
    handles, names = axes[0].get_legend_handles_labels()
    if handles:  # above the plots, right of the title: never over the waveform
        fig.legend(handles, names, fontsize=7, loc="upper right", ncol=4, frameon=False)


def _title(record: TurnRecord) -> str:
    """The figure's title: the turn, its TTFA and stop latency, its verdict and discard."""
    m = record.metrics
    ttfa = m.get("ttfa_ms")
    stop = m.get("stop_latency_ms")
    head = f"{record.turn}  —  TTFA {ttfa:.1f} ms" if isinstance(ttfa, int | float) else record.turn
    if isinstance(stop, int | float):
        head += f", stop {stop:.1f} ms"
    head += f"  [{record.verdict}]"
    if record.discard:
        head += f" discarded: {record.discard}"
    return head


def _png(fig: Any, plt: Any, path: str | Path | None) -> bytes:
    """The figure as PNG bytes (closed afterwards), also written to `path` when given."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    png = buf.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(png)
    return png


TREND_SERIES = (
    ("ttfa_ms", "p50", "TTFA p50"),
    ("ttfa_ms", "p95", "TTFA p95"),
    ("stop_latency_ms", "p95", "stop latency p95"),
)


def trend_png(path: str | Path | None, history: Sequence[Mapping]) -> bytes | None:
    """TTFA p50/p95 and stop latency p95 (ms) over runs; None when there is no run to draw.

    `history`: entries of `harness.report.history.load_history` (oldest first), each with
    "summary": {metric: {"p50": ..., ...}} and "started".
    """
    if not history:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3), dpi=90)
    x = np.arange(1, len(history) + 1)
    drawn = False
    for i, (metric, pct, label) in enumerate(TREND_SERIES):
        y = [((h.get("summary") or {}).get(metric) or {}).get(pct) for h in history]
        yy = np.array([np.nan if v is None else float(v) for v in y])
        if np.all(np.isnan(yy)):
            continue
        drawn = True
        ax.plot(x, yy, marker="o", ms=3, lw=1.2, color=f"C{i}", label=label)
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("run (oldest -> newest)", fontsize=8)
    ax.set_ylabel("ms", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"latency over the last {len(history)} run(s)", fontsize=9, loc="left")
    fig.tight_layout()
    return _png(fig, plt, path)
