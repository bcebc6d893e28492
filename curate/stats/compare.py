"""``curate stats --compare RUN_A RUN_B``: two funnels side by side (stages matched by name, in
the union of both orders), the drop reasons whose counts changed, and what changed between the
two recipes (each run directory's resolved ``pipeline.yaml``)."""

from __future__ import annotations

from typing import Any

import yaml

from curate import storage
from curate.stats.funnel import Funnel

#: Where a run went is not part of its recipe (the spec fingerprint leaves it out too).
_NOT_RECIPE = {"output.path"}


def compare(run_a: str, funnel_a: Funnel, run_b: str, funnel_b: Funnel) -> dict:
    """The comparison as ``--json`` prints it."""
    a, b = _by_stage(funnel_a), _by_stage(funnel_b)
    stages = []
    for name in union_order([s.stage for s in funnel_a.stages], [s.stage for s in funnel_b.stages]):
        counts = {"a": a.get(name), "b": b.get(name)}
        stages.append({"stage": name, **counts, "delta": _delta(counts["a"], counts["b"])})
    reasons = []
    for entry in stages:
        reasons_a = (entry["a"] or {}).get("reasons", {})
        reasons_b = (entry["b"] or {}).get("reasons", {})
        for reason in sorted({*reasons_a, *reasons_b}):
            before, after = reasons_a.get(reason, 0), reasons_b.get(reason, 0)
            if before != after:
                reasons.append({"stage": entry["stage"], "reason": reason, "a": before, "b": after, "delta": after - before})
    for entry in stages:
        for side in ("a", "b"):
            if entry[side] is not None:
                entry[side] = {k: entry[side][k] for k in ("in", "kept", "dropped")}
    return {"a": {"run": run_a, "rows": funnel_a.rows, "kept": funnel_a.kept, "state": funnel_a.state},
            "b": {"run": run_b, "rows": funnel_b.rows, "kept": funnel_b.kept, "state": funnel_b.state},
            "stages": stages, "reasons": reasons, "recipe": recipe_changes(_recipe(run_a), _recipe(run_b))}


def union_order(a: list[str], b: list[str]) -> list[str]:
    """A's stages in A's order, each stage only B has placed right after the stage before it in B."""
    order = list(a)
    previous = None
    for name in b:
        if name not in order:
            order.insert(order.index(previous) + 1 if previous is not None else 0, name)
        previous = name
    return order


def recipe_changes(a: dict, b: dict) -> list[dict]:
    """What differs between two resolved recipes, as ``{"key", "a", "b"}`` (a side is absent
    where the key is). Keys are ``--set`` paths with a stage's parameters at the stage's level
    (``stages.3.threshold``); stages are matched by name and numbered as in B, a stage only A has
    as in A; where only the stages' order changed, the line is ``stages`` with both orders."""
    changes = _diff(_flat({k: v for k, v in a.items() if k != "stages"}),
                    _flat({k: v for k, v in b.items() if k != "stages"}))
    stages_a, stages_b = _stages(a), _stages(b)
    common_a = [n for n in stages_a if n in stages_b]
    common_b = [n for n in stages_b if n in stages_a]
    if common_a != common_b:
        changes.append({"key": "stages", "a": common_a, "b": common_b})
    for name, (index, entry) in stages_b.items():
        if name not in stages_a:
            changes.append({"key": f"stages.{index}", "b": _describe(entry)})
            continue
        for change in _diff(_flat(_inline(stages_a[name][1])), _flat(_inline(entry))):
            changes.append({**change, "key": f"stages.{index}.{change['key']}"})
    for name, (index, entry) in stages_a.items():
        if name not in stages_b:
            changes.append({"key": f"stages.{index}", "a": _describe(entry)})
    return [c for c in changes if c["key"] not in _NOT_RECIPE]


def render(comparison: dict) -> list[str]:
    """The comparison as text: the funnels, the changed reasons, the recipe changes."""
    a, b = comparison["a"], comparison["b"]
    lines = [f"A: {a['run']} ({a['kept']:,} of {a['rows']:,} kept{_state(a)})",
             f"B: {b['run']} ({b['kept']:,} of {b['rows']:,} kept{_state(b)})", ""]
    table = [["stage", "in A -> B", "kept A -> B", "dropped A -> B"]]
    for entry in comparison["stages"]:
        table.append([entry["stage"], *(_change(entry["a"], entry["b"], k) for k in ("in", "kept", "dropped"))])
    lines += _columns(table)
    lines.append("")
    if comparison["reasons"]:
        lines.append("reasons that changed:")
        rows = [["stage", "reason", "A", "B", "delta"]]
        rows += [[r["stage"], r["reason"], f"{r['a']:,}", f"{r['b']:,}", f"{r['delta']:+,}"] for r in comparison["reasons"]]
        lines += ["  " + line for line in _columns(rows)]
    else:
        lines.append("reasons: the same counts")
    lines.append("")
    if comparison["recipe"]:
        lines.append("recipe changes (A -> B):")
        lines += [f"  {c['key']}: {_recipe_value(c, 'a')} -> {_recipe_value(c, 'b')}" for c in comparison["recipe"]]
    else:
        lines.append("recipe: the same")
    return lines


def _by_stage(funnel: Funnel) -> dict[str, dict]:
    return {s["stage"]: s for s in funnel.to_json()["stages"]}


def _delta(a: dict | None, b: dict | None) -> dict[str, int] | None:
    """B - A per count; None for a stage only one run has."""
    return {k: b[k] - a[k] for k in ("in", "kept", "dropped")} if a and b else None


def _recipe(run_dir: str) -> dict:
    return yaml.safe_load(storage.read_bytes(storage.join(run_dir, "pipeline.yaml"))) or {}


def _stages(recipe: dict) -> dict[str, tuple[int, dict]]:
    """Stage name (its ``name:``, else its kind, as the funnel names it) -> (index, entry)."""
    return {(entry.get("name") or entry["stage"]): (index, entry) for index, entry in enumerate(recipe.get("stages") or [])}


def _inline(entry: dict) -> dict:
    """A resolved stage entry with its parameters at the stage's level, as YAML and ``--set`` take them."""
    return {**{k: v for k, v in entry.items() if k != "params"}, **(entry.get("params") or {})}


def _describe(entry: dict) -> str:
    name = entry.get("name")
    return entry["stage"] + (f" (name {name})" if name else "")


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; lists and scalars are values."""
    if not isinstance(tree, dict) or (prefix and not tree):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict]:
    changes = []
    for key in [*a, *(k for k in b if k not in a)]:
        if key not in b:
            changes.append({"key": key, "a": a[key]})
        elif key not in a:
            changes.append({"key": key, "b": b[key]})
        elif a[key] != b[key]:
            changes.append({"key": key, "a": a[key], "b": b[key]})
    return changes


def _recipe_value(change: dict, side: str) -> str:
    if side not in change:
        return "(absent)"
    value = change[side]
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def _change(a: dict | None, b: dict | None, key: str) -> str:
    before = f"{a[key]:,}" if a else "-"
    after = f"{b[key]:,}" if b else "-"
    delta = b[key] - a[key] if a and b else 0  # a stage only one run has: its counts say it all
    return f"{before} -> {after}" + (f" ({delta:+,})" if delta else "")


def _state(side: dict) -> str:
    return "" if side["state"] == "complete" else f"; {side['state']}"


def _columns(rows: list[list[str]]) -> list[str]:
    """Rows as left-aligned columns two spaces apart (numbers read fine left-aligned with arrows)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
