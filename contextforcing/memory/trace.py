"""MemoryTrace: for every chunk, which frame ids the chunk read from the sink, slow and fast tiers, at
which RoPE positions, and the similarity that decided each promotion. Saved as JSON next to a video
and drawable with matplotlib (a figure on the Agg canvas, imported lazily).

A trace is enough to rebuild a streamed run as one forward pass (see `tests/test_streaming.py`):
a policy only decides what each chunk sees, and where.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contextforcing.memory.config import MemoryConfig
from contextforcing.memory.policy import MemoryLayout

__all__ = ["ChunkRecord", "LayerRecord", "MemoryTrace", "busiest_layer", "plot_trace", "promoted_frames"]


@dataclass(frozen=True, slots=True)
class LayerRecord:
    """What one layer (or every layer, when decisions are shared) held when a chunk was generated."""

    layout: MemoryLayout
    context_positions: tuple[int, ...]
    similarity: float | None = None
    promoted: tuple[int, ...] = ()
    """Frame ids of the chunk promoted into the slow tier (after the chunk; released: during it)."""
    calls: tuple[float | None, ...] = ()
    """Released bookkeeping: the similarity of every model call of the chunk to the call before it
    (None where no test ran); empty for the clean policy, which tests once per chunk."""
    promoted_at: int | None = None
    """Released bookkeeping: the call whose own K/V were promoted; that call and the later ones read
    the layout after the promotion, the earlier ones `layout`."""

    def to_dict(self) -> dict[str, Any]:
        return {**self.layout.to_dict(), "context_positions": list(self.context_positions),
                "similarity": self.similarity, "promoted": list(self.promoted), "calls": list(self.calls),
                "promoted_at": self.promoted_at}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerRecord:
        layout = MemoryLayout(tuple(data["sink"]), tuple(data["slow"]), tuple(data["fast"]))
        # Traces written before the released bookkeeping existed have no per-call fields.
        calls, promoted_at = tuple(data.get("calls", ())), data.get("promoted_at")
        return cls(layout, tuple(data["context_positions"]), data["similarity"], tuple(data["promoted"]),
                   calls, promoted_at)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """One chunk: its frames, query positions, prompt, and per-layer memory records."""

    chunk: int
    frames: tuple[int, ...]
    query_positions: tuple[int, ...]
    layers: tuple[LayerRecord, ...]
    prompt_index: int = 0
    recached: bool = False
    """Whether the memory was re-encoded just before this chunk (a new prompt, or `MemoryConfig.reencode`)."""

    def layer(self, index: int) -> LayerRecord:
        """The record of layer `index` (the shared record when decisions are shared)."""
        return self.layers[index if len(self.layers) > 1 else 0]

    def to_dict(self) -> dict[str, Any]:
        return {"chunk": self.chunk, "frames": list(self.frames), "query_positions": list(self.query_positions),
                "prompt_index": self.prompt_index, "recached": self.recached,
                "layers": [r.to_dict() for r in self.layers]}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkRecord:
        return cls(
            chunk=data["chunk"], frames=tuple(data["frames"]), query_positions=tuple(data["query_positions"]),
            layers=tuple(LayerRecord.from_dict(r) for r in data["layers"]), prompt_index=data["prompt_index"],
            recached=data["recached"],
        )  # fmt: skip


@dataclass(slots=True)
class MemoryTrace:
    """The memory history of one streamed video."""

    config: MemoryConfig
    records: list[ChunkRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "chunks": [r.to_dict() for r in self.records]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MemoryTrace:
        return cls(MemoryConfig.from_dict(data["config"]), [ChunkRecord.from_dict(r) for r in data["chunks"]])

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path) -> MemoryTrace:
        return cls.from_dict(json.loads(Path(path).read_text()))


def busiest_layer(trace: MemoryTrace) -> int:
    """The layer that promoted most often (the lowest such layer on a tie; 0 when decisions are shared)."""
    if not trace.records:
        return 0
    counts = [0] * len(trace.records[0].layers)
    for record in trace.records:
        for index, layer in enumerate(record.layers):
            counts[index] += bool(layer.promoted)
    return counts.index(max(counts))


def promoted_frames(trace: MemoryTrace, layer: int) -> set[int]:
    """Frame ids that layer `layer` promoted into its slow tier at some chunk."""
    return {frame for record in trace.records for frame in record.layer(layer).promoted}


def plot_trace(trace: MemoryTrace, path: str | Path, *, layer: int | None = None) -> Path:
    """Draw which frames each chunk read (top) and the promotion similarities (bottom) into a PNG.

    Slow-tier frames that a promotion put there are drawn apart from those the slow tier was filled
    with as they left the fast tier.

    Args:
        trace: the trace.
        path: output image path.
        layer: the layer to draw when decisions are per layer (default: `busiest_layer`).
    """
    from matplotlib.figure import Figure  # a figure on the Agg canvas: no pyplot state, no GUI backend

    layer = busiest_layer(trace) if layer is None else layer
    promoted = promoted_frames(trace, layer)
    fig = Figure(figsize=(10, 7))
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    points: dict[str, tuple[list[int], list[int]]] = {}
    for record in trace.records:
        layout = record.layer(layer).layout
        for tier in ("sink", "slow", "fast"):
            for frame in getattr(layout, tier):
                name = "slow, promoted" if tier == "slow" and frame in promoted else tier
                xs, ys = points.setdefault(name, ([], []))
                xs.append(record.chunk)
                ys.append(frame)
    colors = {"sink": "tab:red", "slow": "tab:blue", "slow, promoted": "tab:purple", "fast": "tab:green"}
    for name, color in colors.items():
        if name in points:
            top.scatter(*points[name], s=8, c=color, label=name, marker="s")
    top.set_ylabel("frame id")
    shared = bool(trace.records) and len(trace.records[0].layers) == 1
    top.set_title(f"memory read by each chunk ({'all layers' if shared else f'layer {layer}'})")
    top.legend(loc="upper left")
    tested = [(r.chunk, r.layer(layer).similarity, bool(r.layer(layer).promoted)) for r in trace.records]
    tested = [item for item in tested if item[1] is not None]
    if tested:
        bottom.plot([c for c, _, _ in tested], [s for _, s, _ in tested], ".-", color="gray")
        marks = [(c, s) for c, s, p in tested if p]
        bottom.scatter(
            [c for c, _ in marks], [s for _, s in marks], c="tab:purple", zorder=3, label="promoted"
        )
    bottom.axhline(trace.config.threshold(layer), color="tab:orange", ls="--", label="tau")
    bottom.set_xlabel("chunk")
    bottom.set_ylabel("similarity")
    bottom.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return Path(path)
