"""Two sweeps' runs side by side, depth by depth (`miniseries report A B`): the final val bpb, CORE
(where a run has it), tokens and wall time of each, from the two report.json documents. Pure: no store.

Val bpb is the one number comparable across trainers and tokenizers (bits per byte of the same
validation text), so it leads; a row names a depth either sweep trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DepthRow:
    depth: int
    a: dict[str, Any] | None  # report.json's run entry of sweep A at this depth (None: not trained there)
    b: dict[str, Any] | None

    def value(self, side: str, key: str) -> float | None:
        run = self.a if side == "a" else self.b
        v = None if run is None or run.get("status") != "finished" else run.get(key)
        return float(v) if isinstance(v, int | float) else None

    def bpb_delta(self) -> float | None:
        """B's val bpb minus A's (negative: B predicts the same bytes better)."""
        a, b = self.value("a", "val_bpb"), self.value("b", "val_bpb")
        return None if a is None or b is None else b - a


def _by_depth(doc: dict[str, Any]) -> dict[int, dict[str, Any]]:
    # wsd sweeps have several runs per depth: the side by side is of ratio/isoflop-style sweeps, one per
    # depth, so the first run of a depth (the plan's order) stands for it.
    out: dict[int, dict[str, Any]] = {}
    for run in doc.get("runs", []):
        out.setdefault(int(run["depth"]), run)
    return out


def depth_rows(doc_a: dict[str, Any], doc_b: dict[str, Any]) -> list[DepthRow]:
    a, b = _by_depth(doc_a), _by_depth(doc_b)
    return [DepthRow(d, a.get(d), b.get(d)) for d in sorted(set(a) | set(b))]


def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


#: (column title, report.json key, format)
COLUMNS = (("val bpb", "val_bpb", ".4f"), ("CORE", "core", ".4f"), ("tokens", "tokens", ",.0f"),
           ("wall s", "wall_seconds", ".1f"))  # fmt: skip


def render_depths(name_a: str, name_b: str, rows: list[DepthRow]) -> list[str]:
    """A markdown table (also printed by the CLI): per depth, each column for A then B, and B - A in val bpb."""
    head = ["depth"]
    for title, _key, _spec in COLUMNS:
        head += [f"{title} {name_a}", f"{title} {name_b}"]
    head.append(f"val bpb {name_b} − {name_a}")
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        cells = [f"d{r.depth}"]
        for _title, key, spec in COLUMNS:
            cells += [_fmt(r.value("a", key), spec), _fmt(r.value("b", key), spec)]
        delta = r.bpb_delta()
        cells.append("—" if delta is None else f"{delta:+.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines
