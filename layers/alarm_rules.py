"""Alarm grades as data: which level a reading is at, when an alarm opens and when it ends.

The rules live in a JSON file (``layers/alarm_rules.json``, sources cited inside it; a deployment
replaces it with ``TWIN_ALARM_RULES``). :func:`load_rules` checks the file and says what is wrong
with it, so a typo fails at start-up, not at the first breach.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.errors import InvalidParameter

DEFAULT_RULES = Path(__file__).with_name("alarm_rules.json")


@dataclass(frozen=True)
class Level:
    level: int
    name: str
    name_zh: str
    bound: float | None = None  # None: the lowest level, no lower bound
    inclusive: bool = False  # "from" (>=) rather than "above" (>)

    def applies(self, value: float, base: float) -> bool:
        if self.bound is None:
            return True
        b = base + self.bound
        return value >= b if self.inclusive else value > b


@dataclass(frozen=True)
class MetricRule:
    """Grades of one metric; bounds are offsets from the device's own threshold when ``relative``."""

    metric: str
    unit: str
    levels: tuple[Level, ...]
    alarm_level: int
    deadband: float = 0.0
    relative: bool = False
    default_threshold: float | None = None
    iaqi_breakpoints: tuple[tuple[float, float], ...] = ()

    def base(self, device_thresholds: dict[str, Any] | None) -> float:
        if not self.relative:
            return 0.0
        own = (device_thresholds or {}).get(self.metric)
        if isinstance(own, (int, float)) and math.isfinite(own):
            return float(own)
        return float(self.default_threshold or 0.0)

    def grade(self, value: float, device_thresholds: dict[str, Any] | None = None) -> Level:
        base = self.base(device_thresholds)
        return [lv for lv in self.levels if lv.applies(value, base)][-1]

    def is_alarm(self, level: Level) -> bool:
        return level.level >= self.alarm_level

    def cleared(self, value: float, device_thresholds: dict[str, Any] | None = None) -> bool:
        """Below the alarm level's bound by at least the deadband (so a value hovering at the bound
        does not open and close events over and over)."""
        lv = next(lv for lv in self.levels if lv.level == self.alarm_level)
        assert lv.bound is not None
        return value < self.base(device_thresholds) + lv.bound - self.deadband

    def iaqi(self, value: float) -> float | None:
        """Individual air quality index by linear interpolation between breakpoints (HJ 633 eq. 1)."""
        bp = self.iaqi_breakpoints
        if not bp or value < bp[0][0]:
            return None
        for (c_lo, i_lo), (c_hi, i_hi) in zip(bp, bp[1:], strict=False):
            if value <= c_hi:
                return round(i_lo + (i_hi - i_lo) * (value - c_lo) / (c_hi - c_lo))
        return float(bp[-1][1])  # above the table: IAQI capped at its top


@dataclass(frozen=True)
class KindRules:
    kind: str
    category: str
    title_zh: str
    metrics: dict[str, MetricRule]
    device_thresholds: bool = False


@dataclass(frozen=True)
class AlarmRules:
    kinds: dict[str, KindRules]
    sources: dict[str, str]

    def rule_for(self, kind: str, metric: str, device_thresholds: dict[str, Any] | None) -> MetricRule | None:
        """The rule grading ``metric`` of a ``kind`` device, or None if it raises no alarms."""
        k = self.kinds.get(kind)
        if k is None:
            return None
        if metric in k.metrics:
            return k.metrics[metric]
        if k.device_thresholds:
            thr = (device_thresholds or {}).get(metric)
            if isinstance(thr, (int, float)) and not isinstance(thr, bool) and math.isfinite(thr):
                return MetricRule(metric, "", (Level(1, "normal", "正常"),
                                               Level(2, "above_threshold", "超过阈值", float(thr), True)), 2)
        return None


def load_rules(path: Path | None = None) -> AlarmRules:
    """Read and check a rules file (default: the packaged one)."""
    path = path or DEFAULT_RULES
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidParameter(f"cannot read alarm rules {path}: {exc}") from None
    try:
        kinds = {str(name): _kind(str(name), spec) for name, spec in doc["kinds"].items()}
        sources = {str(k): str(v) for k, v in doc.get("sources", {}).items()}
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InvalidParameter(f"alarm rules {path} are malformed: {exc!r}") from None
    return AlarmRules(kinds=kinds, sources=sources)


def _kind(name: str, spec: dict[str, Any]) -> KindRules:
    if not isinstance(spec.get("category"), str) or not isinstance(spec.get("title_zh"), str):
        raise ValueError(f"{name}: 'category' and 'title_zh' must be strings")
    metrics = spec["metrics"]
    if metrics == "device_thresholds":
        return KindRules(name, spec["category"], spec["title_zh"], {}, device_thresholds=True)
    return KindRules(name, spec["category"], spec["title_zh"],
                     {m: _metric(m, r) for m, r in metrics.items()}, bool(spec.get("device_thresholds", False)))


def _metric(metric: str, r: dict[str, Any]) -> MetricRule:
    levels = []
    for i, lv in enumerate(r["levels"]):
        bound, inclusive = (float(lv["from"]), True) if "from" in lv else (
            (float(lv["above"]), False) if "above" in lv else (None, False))
        if (bound is None) != (i == 0):
            raise ValueError(f"{metric}: only the first level has no bound ('above' or 'from')")
        levels.append(Level(int(lv["level"]), str(lv["name"]), str(lv.get("name_zh", lv["name"])), bound, inclusive))
    bounds = [lv.bound for lv in levels[1:]]
    if bounds != sorted(bounds) or len({lv.level for lv in levels}) != len(levels):
        raise ValueError(f"{metric}: levels must have distinct numbers and rising bounds")
    alarm = int(r["alarm_level"])
    if alarm not in [lv.level for lv in levels[1:]]:
        raise ValueError(f"{metric}: alarm_level {alarm} must be one of the bounded levels")
    return MetricRule(
        metric=metric, unit=str(r.get("unit", "")), levels=tuple(levels), alarm_level=alarm,
        deadband=float(r.get("deadband", 0.0)), relative=r.get("relative_to") == "device_threshold",
        default_threshold=r.get("default_threshold"),
        iaqi_breakpoints=tuple((float(c), float(i)) for c, i in r.get("iaqi_breakpoints", [])),
    )


__all__ = ["AlarmRules", "DEFAULT_RULES", "KindRules", "Level", "MetricRule", "load_rules"]
