"""Where a page's main-thread CPU goes, from a Chromium trace (``Browser.start_tracing``):
the thread time (``tdur``, CPU, not wall: the figure that moves least on a loaded machine)
of the renderer's main thread, each event's own time (its children's taken out), summed
by kind: HTML parse, script (compile, run, module evaluation; decrypt, inflate and
highlight.js run here), style, layout, paint, the rest."""

from __future__ import annotations

import json
from collections import defaultdict

KINDS = {
    "ParseHTML": "parse",
    "EvaluateScript": "script", "FunctionCall": "script", "v8.compile": "script",
    "v8.compileModule": "script", "v8.evaluateModule": "script", "V8.GCScavenger": "gc",
    "MajorGC": "gc", "MinorGC": "gc", "V8.GC_MARK_COMPACTOR": "gc",
    "v8.run": "script", "TimerFire": "script", "FireAnimationFrame": "script",
    "EventDispatch": "script", "RunMicrotasks": "script", "v8.callFunction": "script",
    "UpdateLayoutTree": "style", "ScheduleStyleRecalculation": "style",
    "ParseAuthorStyleSheet": "style",
    "Layout": "layout",
    "Paint": "paint", "PrePaint": "paint", "Layerize": "paint", "UpdateLayer": "paint",
    "CompositeLayers": "paint", "Commit": "paint",
}
CATEGORIES = "devtools.timeline,v8,v8.execute,disabled-by-default-devtools.timeline,blink"


def main_thread(events: list[dict]) -> tuple[int, int]:
    """(pid, tid) of the renderer main thread with the most events."""
    names = {(e["pid"], e["tid"]) for e in events
             if e.get("ph") == "M" and e.get("name") == "thread_name"
             and e.get("args", {}).get("name") == "CrRendererMain"}
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for e in events:
        if (e.get("pid"), e.get("tid")) in names:
            counts[(e["pid"], e["tid"])] += 1
    return max(counts, key=lambda k: counts[k])


def cpu_by_kind(trace: bytes) -> dict[str, float]:
    """Main-thread CPU milliseconds by kind, and their total, of a trace."""
    events = json.loads(trace)
    events = events["traceEvents"] if isinstance(events, dict) else events
    thread = main_thread(events)
    spans = sorted(((e["ts"], e["ts"] + e.get("dur", 0), e.get("tdur", 0), e["name"])
                    for e in events if e.get("ph") == "X" and (e["pid"], e["tid"]) == thread
                    and "tdur" in e), key=lambda s: (s[0], -s[1]))
    # Each event's own time goes to its kind, or to the nearest enclosing event's that
    # has one (Blink's inner events: LocalFrameView::performLayout in Layout).
    kinds: dict[str, float] = defaultdict(float)
    stack: list[list] = []  # [end, kind, tdur not in children]
    for begin, end, tdur, name in spans:
        while stack and stack[-1][0] <= begin:
            done = stack.pop()
            kinds[done[1]] += max(done[2], 0) / 1000
        if stack:
            stack[-1][2] -= tdur
        kind = KINDS.get(name) or (stack[-1][1] if stack else "other")
        stack.append([end, kind, tdur])
    for done in stack:
        kinds[done[1]] += max(done[2], 0) / 1000
    out = {k: round(v) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])}
    out["total"] = round(sum(kinds.values()))
    return out
