"""The paper's table: seed, vanilla fine-tuning and SDFT per fine-tuning dataset, one column per task.

    tables = compare(["eval/seed", "eval/gsm8k-vanilla", "eval/gsm8k-sdft"], out="eval/table")
    print(tables["terminal"])

Each folder is an `sdft-train eval` output (results.json). Its role comes from
the training record the evaluated model carried: no record is the seed model;
`responses: original` is vanilla fine-tuning; `responses: sdft` is SDFT; the
record's recipe (or data) names the fine-tuning dataset. SDFT rows show their
change over the vanilla row of the same dataset with an arrow.

Results are put side by side only when they were made the same way: for every
task they share, the same task version, data (Hub revision or file hash),
decoding, prompt format and row limit. Otherwise `compare` refuses and says
which folder differs in what. A folder evaluated on other tasks (another
suite), or a model not fine-tuned from the seed model, is flagged in a note.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sdft_data.diff.render import latex_escape

from .evaluate import read_results


def load_results(folder: str | Path) -> dict:
    """A folder's results.json, checked (evaluate.read_results): ValueError (one line) when it cannot be read."""
    return read_results(folder)


def _made_how(results: dict, task: str) -> dict:
    entry = results["tasks"][task]
    return {
        "task version": entry.get("version"),
        "data": entry.get("data"),
        "decoding": entry.get("decoding"),
        "format": results.get("decoding", {}).get("format"),
        "limit": results.get("limit"),
    }


def check_comparable(named: dict[str, dict]) -> None:
    """ValueError naming every (task, what, folders) that differs between results."""
    problems = []
    folders = list(named)
    first = folders[0]
    for other in folders[1:]:
        for task in named[first]["tasks"]:
            if task not in named[other]["tasks"]:
                continue
            a, b = _made_how(named[first], task), _made_how(named[other], task)
            for what in a:
                if a[what] != b[what]:
                    problems.append(f"{task}: {what} differs ({first}: {_short(a[what])}; {other}: {_short(b[what])})")
    # Tasks the first folder lacks are compared between the others.
    rest = {k: v for k, v in named.items() if k != first}
    if len(rest) > 1:
        try:
            check_comparable(rest)
        except ValueError as e:
            problems.append(str(e).removeprefix("cannot compare: "))
    if problems:
        raise ValueError("cannot compare: " + "; ".join(dict.fromkeys(problems)))


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _model_name(results: dict) -> str:
    model = results.get("model", {})
    return str(model.get("given") or model.get("model_id"))


def assemble(folders: list[str | Path], seed: str | Path | None = None) -> dict:
    """The table's content: rows (label, role, dataset, folder), task columns, scores, notes."""
    named = {str(f): load_results(f) for f in folders}
    if seed is not None and str(seed) not in named:
        named = {str(seed): load_results(seed), **named}
    check_comparable(named)
    notes = []

    seeds = [f for f, r in named.items() if r.get("arm") == "seed"]
    if seed is not None:
        seed_folder = str(seed)
    elif len(seeds) > 1:
        raise ValueError(f"several seed-model results ({', '.join(seeds)}): name the seed with --seed DIR")
    else:
        seed_folder = seeds[0] if seeds else None
    if seed_folder is None:
        notes.append("no seed-model results (a model with no training record, or --seed DIR): no seed row")

    groups: dict[str, dict[str, str]] = {}
    for folder, results in named.items():
        if folder == seed_folder:
            continue
        arm, dataset = results.get("arm"), results.get("dataset") or "?"
        if arm == "seed":
            notes.append(f"{folder}: a model with no training record besides the seed; left out")
            continue
        group = groups.setdefault(dataset, {})
        if arm in group:
            raise ValueError(f"two {arm} results for {dataset}: {group[arm]} and {folder}; compare one of each")
        group[arm] = folder
        base = (results.get("train") or {}).get("base_model")
        base_name = base.get("name") if isinstance(base, dict) else base
        if seed_folder and base_name and base_name not in (_model_name(named[seed_folder]),
                                                          named[seed_folder]["model"].get("model_id")):
            notes.append(f"{folder}: fine-tuned from {base_name}, but the seed results are of "
                         f"{_model_name(named[seed_folder])}")

    order = []
    from .tasks import task_names

    known = task_names()
    for results in named.values():
        for task in results["tasks"]:
            if task not in order:
                order.append(task)
    order.sort(key=lambda t: known.index(t) if t in known else len(known))
    for folder, results in named.items():
        missing = [t for t in order if t not in results["tasks"]]
        if missing:
            notes.append(f"{folder}: not evaluated on {', '.join(missing)} (suite {results.get('suite') or 'custom'})")

    rows = []
    if seed_folder:
        rows.append({"label": "Seed", "role": "seed", "dataset": None, "folder": seed_folder})
    for dataset, group in groups.items():
        for arm, label in (("vanilla", "Vanilla FT"), ("sdft", "SDFT")):
            if arm in group:
                rows.append({"label": f"{label} ({dataset})", "role": arm, "dataset": dataset, "folder": group[arm]})
        for arm in group:
            if arm not in ("vanilla", "sdft"):
                rows.append({"label": f"{arm} ({dataset})", "role": arm, "dataset": dataset, "folder": group[arm]})
    percent = {}
    for row in rows:
        results = named[row["folder"]]
        row["cells"] = {}
        for task in order:
            entry = results["tasks"].get(task)
            if entry is None:
                continue
            percent[task] = entry.get("percent", True)
            scale = 100.0 if percent[task] else 1.0
            score = entry.get("score")
            row["cells"][task] = {
                "score": None if score is None else score * scale,
                "std": None if entry.get("std") is None or entry["decoding"]["samples"] < 2 else entry["std"] * scale,
            }
    for dataset, group in groups.items():
        if "vanilla" in group and "sdft" in group:
            vanilla = next(r for r in rows if r["dataset"] == dataset and r["role"] == "vanilla")
            sdft = next(r for r in rows if r["dataset"] == dataset and r["role"] == "sdft")
            for task, cell in sdft["cells"].items():
                other = vanilla["cells"].get(task, {}).get("score")
                if cell["score"] is not None and other is not None:
                    cell["delta"] = cell["score"] - other
    return {"rows": rows, "tasks": order, "percent": percent, "notes": notes}


def _cell_text(cell: dict | None, percent: bool, *, arrows: bool = True, latex: bool = False) -> str:
    if not cell or cell["score"] is None:
        return "-"
    digits = 2 if percent else 3
    text = f"{cell['score']:.{digits}f}"
    if cell.get("std") is not None:
        text += (" $\\pm$ " if latex else " ± ") + f"{cell['std']:.{digits}f}"
    if arrows and "delta" in cell:
        d = cell["delta"]
        arrow = ("$\\uparrow$" if latex else "↑") if d > 0 else ("$\\downarrow$" if latex else "↓") if d < 0 else "→"
        text += f" ({arrow}{abs(d):.{digits}f})"
    return text


def render(table: dict) -> dict[str, str]:
    """The table as terminal text, markdown, LaTeX and CSV."""
    tasks, rows, percent = table["tasks"], table["rows"], table["percent"]
    header = ["Model"] + tasks
    body = [[r["label"]] + [_cell_text(r["cells"].get(t), percent.get(t, True)) for t in tasks] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    terminal = "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, body)])
    if table["notes"]:
        terminal += "\n\n" + "\n".join(f"note: {n}" for n in table["notes"])
    markdown = "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                          *("| " + " | ".join(r) + " |" for r in body)])
    latex_rows = [" & ".join([latex_escape(r["label"])] + [_cell_text(r["cells"].get(t), percent.get(t, True), latex=True)
                                                  for t in tasks]) + " \\\\" for r in rows]
    latex = "\n".join(["\\begin{tabular}{l" + "r" * len(tasks) + "}", "\\toprule",
                       " & ".join(["Model"] + [latex_escape(t) for t in tasks]) + " \\\\", "\\midrule", *latex_rows,
                       "\\bottomrule", "\\end{tabular}"])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["row", "role", "dataset", "folder", "task", "score", "std", "delta_vs_vanilla"])
    for r in rows:
        for t in tasks:
            c = r["cells"].get(t)
            if c:
                writer.writerow([r["label"], r["role"], r["dataset"] or "", r["folder"], t,
                                 "" if c["score"] is None else round(c["score"], 4),
                                 "" if c.get("std") is None else round(c["std"], 4),
                                 "" if "delta" not in c else round(c["delta"], 4)])
    return {"terminal": terminal, "markdown": markdown, "latex": latex, "csv": buf.getvalue()}


def plot(table: dict, path: Path) -> None:
    """Grouped bars: one group per task, one bar per row (seed, vanilla, SDFT, ...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, rows = table["tasks"], table["rows"]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks)), 4))
    width = 0.8 / max(1, len(rows))
    colors = {"seed": "#616C6E", "vanilla": "#A16058", "sdft": "#85BFAC"}
    for i, r in enumerate(rows):
        xs = [j + i * width for j in range(len(tasks))]
        ys = [(r["cells"].get(t) or {}).get("score") or 0.0 for t in tasks]
        ax.bar(xs, ys, width, label=r["label"], color=colors.get(r["role"]), alpha=0.6 + 0.4 * (i % 2))
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=20)
    ax.set_ylabel("score (%; similarity x1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(folders: list[str | Path], *, seed: str | Path | None = None, out: str | Path | None = None) -> dict:
    """Assemble, render and (with `out`) write table.{md,tex,csv,png}. Returns the rendered texts."""
    if not folders:
        raise ValueError("name at least one results folder")
    table = assemble(folders, seed)
    texts = render(table)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for fmt, suffix in (("markdown", "md"), ("latex", "tex"), ("csv", "csv")):
            (out / f"table.{suffix}").write_text(texts[fmt] + ("" if fmt == "csv" else "\n"))
        plot(table, out / "table.png")
        (out / "table.json").write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n")
    return texts
