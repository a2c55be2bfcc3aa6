"""The paper's table: seed, vanilla fine-tuning and SDFT (and any other arm) per fine-tuning dataset, a column per task.

    tables = compare(["eval/seed", "eval/gsm8k-vanilla", "eval/gsm8k-sdft"], out="eval/table")
    print(tables["terminal"])

Each folder is an `sdft-train eval` output (results.json). Its role comes from
the training record the evaluated model carried: no record is the seed model;
`responses: original` is vanilla fine-tuning; `responses: sdft` is SDFT; any
other arm by its own name; the record's recipe (or data) names the fine-tuning
dataset. Each arm's row shows its difference from the vanilla row of the same
dataset, with a paired 95% confidence interval over the prompts, and says when
that difference is within noise; a second table holds every paired comparison
(each arm against vanilla and against the seed model), with McNemar's exact
test for 0/1 scores (sdft_train.stats). Folders of one arm trained with
different `--seed`s and otherwise the same way make one row: the mean over the
seeds, their spread, and intervals that resample the seeds too.

Results are put side by side only when they were made the same way: for every
task they share, the same task version, data (Hub revision or file hash),
decoding, prompt format and row limit, and for similarity the same embedding
model. Otherwise `compare` refuses and says which folder differs in what. A
folder evaluated on other tasks (another suite), or a model not fine-tuned
from the seed model, is flagged in a note; a score some of whose answers were
cut at max_new_tokens is marked † and counted in a note.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

from sdft_data.diff.render import latex_escape

from . import stats
from .evaluate import read_results

# How each arm is called in the table; another arm (on-policy, ...) by its own name.
ARM_LABELS = {"seed": "Seed", "vanilla": "Vanilla FT", "sdft": "SDFT", "on-policy": "On-policy"}
# The arm every other arm of a dataset is measured against (the paper's question: SDFT vs vanilla).
REFERENCE_ARM = "vanilla"
# Training settings that do not change what is trained (sdft_train.train._NOT_IN_KEY), and the seed, which
# replicas differ in.
_NOT_TRAINING = {"seed", "save_steps", "save_total_limit", "merge", "padding_free", "attn_implementation"}


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


def _embedding_model(entry: dict):
    """The embedding model a similarity entry was scored with (None: not scored, nothing to compare)."""
    record = entry.get("embedding_model")
    return record.get("name") if isinstance(record, dict) and record.get("name") else None


def check_comparable(named: dict[str, dict]) -> None:
    """ValueError naming every (task, what, folders) that differs between results."""
    problems = _differences(named)
    # Similarities made with different embedding models are different measures (unscored entries have none).
    for task in sorted({t for r in named.values() for t in r["tasks"]}):
        used = {f: _embedding_model(r["tasks"][task]) for f, r in named.items() if task in r["tasks"]}
        used = {f: m for f, m in used.items() if m}
        if len(set(used.values())) > 1:
            shown = "; ".join(f"{f}: {m}" for f, m in used.items())
            problems.append(f"{task}: embedding model differs ({shown})")
    if problems:
        raise ValueError("cannot compare: " + "; ".join(dict.fromkeys(problems)))


def _differences(named: dict[str, dict]) -> list[str]:
    """Every (task, what, folders) whose making differs between results (see _made_how)."""
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
        problems += _differences(rest)
    return problems


def _short(value) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def _model_name(results: dict) -> str:
    model = results.get("model", {})
    return str(model.get("given") or model.get("model_id"))


def _training_seed(results: dict):
    config = (results.get("train") or {}).get("config")
    return config.get("seed") if isinstance(config, dict) else None


def _training(results: dict) -> dict:
    """What a training record says was trained, except the seed: the replicas of one arm agree on all of it."""
    train = results.get("train") or {}
    config = train.get("config") if isinstance(train.get("config"), dict) else {}
    base = train.get("base_model")
    return {"config": {k: v for k, v in config.items() if k not in _NOT_TRAINING},
            "data": train.get("data_fingerprint") or train.get("data"),
            "data revision": train.get("data_revision"),
            "base model": (base.get("revision") or base.get("name")) if isinstance(base, dict) else base,
            "format": train.get("format"), "recipe": train.get("recipe")}


def _setting_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            out += _setting_differences(x, y, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key} ({_short(x)} vs {_short(y)})")
    return out


def _add_replica(group: dict[str, list[str]], arm: str, dataset: str, folder: str, named: dict) -> None:
    """Put `folder` in its arm's list: several folders of one arm are its training seeds, or a ValueError."""
    folders = group.setdefault(arm, [])
    if folders:
        seed, seeds = _training_seed(named[folder]), [_training_seed(named[f]) for f in folders]
        if seed is None or seed in seeds:
            clash = folders[seeds.index(seed)] if seed in seeds else folders[0]
            both = f", both trained with seed {seed}" if seed is not None else ""
            raise ValueError(f"two {arm} results for {dataset}: {clash} and {folder}{both}; compare one of each, "
                             "or the same training with different --seed")
        differs = _setting_differences(_training(named[folders[0]]), _training(named[folder]))
        if differs:
            raise ValueError(f"{arm} results for {dataset} trained differently, not only in the seed ({folders[0]} vs "
                             f"{folder}: {'; '.join(differs)}): compare one of each")
    folders.append(folder)


def _label(arm: str, dataset: str | None, seeds: int) -> str:
    name = ARM_LABELS.get(arm, arm)
    if dataset is None:
        return name
    return f"{name} ({dataset}{f', {seeds} seeds' if seeds > 1 else ''})"


def assemble(folders: list[str | Path], seed: str | Path | None = None, *, resamples: int = stats.RESAMPLES,
             bootstrap_seed: int = stats.BOOTSTRAP_SEED) -> dict:
    """The table's content: rows (label, role, dataset, folders, training seeds, cells), task columns, the paired
    comparisons (each arm against vanilla and against the seed model, per task), how they were made, and notes."""
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

    groups: dict[str, dict[str, list[str]]] = {}
    for folder, results in named.items():
        if folder == seed_folder:
            continue
        arm, dataset = results.get("arm"), results.get("dataset") or "?"
        if arm == "seed":
            notes.append(f"{folder}: a model with no training record besides the seed; left out")
            continue
        _add_replica(groups.setdefault(dataset, {}), str(arm), dataset, folder, named)
        base = (results.get("train") or {}).get("base_model")
        base_name = base.get("name") if isinstance(base, dict) else base
        base_id = base.get("model_id") if isinstance(base, dict) else None
        seed_ids = (_model_name(named[seed_folder]), named[seed_folder]["model"].get("model_id")) if seed_folder else ()
        if seed_folder and base_name and base_name not in seed_ids and base_id not in seed_ids:
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
        rows.append({"label": ARM_LABELS["seed"], "role": "seed", "dataset": None, "folders": [seed_folder],
                     "seeds": None})
    for dataset, group in groups.items():
        # Vanilla, SDFT, then any other arm in the order met; an arm's seeds in their order.
        for arm in sorted(group, key=lambda a: (a != REFERENCE_ARM, a != "sdft")):
            replicas = sorted(group[arm], key=lambda f: (_training_seed(named[f]) is None,
                                                         _training_seed(named[f]) or 0))
            rows.append({"label": _label(arm, dataset, len(replicas)), "role": arm, "dataset": dataset,
                         "folders": replicas, "seeds": [_training_seed(named[f]) for f in replicas]})
    percent, digits = {}, {}
    for row in rows:
        row["cells"] = {}
        for task in order:
            entries = [named[f]["tasks"].get(task) for f in row["folders"]]
            if any(e is None for e in entries):
                if any(e is not None for e in entries):
                    notes.append(f"{row['label']}: not every seed was evaluated on {task}; left out")
                continue
            percent[task] = entries[0].get("percent", True)
            digits[task] = _digits(percent[task], entries[0].get("metric"))
            scale = 100.0 if percent[task] else 1.0
            scores = [e.get("score") for e in entries]
            if any(s is None for s in scores):
                row["cells"][task] = {"score": None, "std": None, "spread": None}
            elif len(scores) > 1:
                row["cells"][task] = {"score": statistics.fmean(scores) * scale,
                                      "std": statistics.stdev(scores) * scale, "spread": "seeds",
                                      "per_seed": [s * scale for s in scores]}
            else:
                entry = entries[0]
                samples = (entry.get("decoding") or {}).get("samples") or 1
                std = None if entry.get("std") is None or samples < 2 else entry["std"] * scale
                row["cells"][task] = {"score": scores[0] * scale, "std": std, "spread": "samples" if std is not None
                                      else None}
            for entry, folder in zip(entries, row["folders"]):
                if entry.get("truncated") and entry.get("score") is not None:
                    row["cells"][task]["truncated"] = row["cells"][task].get("truncated", 0) + entry["truncated"]
                    total = entry.get("rows", 0) * (entry.get("decoding") or {}).get("samples", 1)
                    notes.append(f"† {row['label']}, {task}: {entry['truncated']} of {total} answers cut at "
                                 f"max_new_tokens ({folder})")
                if entry.get("not_scored"):
                    notes.append(f"{row['label']}, {task}: not scored: {entry['not_scored']}")
    comparisons = _compare_rows(rows, order, percent, named, notes, resamples=resamples, seed=bootstrap_seed)
    return {"rows": rows, "tasks": order, "percent": percent, "digits": digits, "comparisons": comparisons,
            "bootstrap": {"method": "percentile", "level": stats.LEVEL, "resamples": resamples, "seed": bootstrap_seed},
            "notes": list(dict.fromkeys(notes))}


def _compare_rows(rows: list[dict], order: list[str], percent: dict, named: dict, notes: list[str], *,
                  resamples: int, seed: int) -> list[dict]:
    """Every trained row against its dataset's vanilla row (shown in the table) and against the seed row, per task."""
    cache: dict[tuple[str, str], dict | None] = {}

    def per_row(folder: str, task: str) -> dict | None:
        if (folder, task) not in cache:
            cache[folder, task] = stats.row_scores(folder, task, named[folder]["tasks"][task])
            if cache[folder, task] is None:
                notes.append(f"{folder}: no per-row predictions for {task} (predictions/{task}.jsonl): "
                             "no confidence interval for it")
        return cache[folder, task]

    seed_row = next((r for r in rows if r["role"] == "seed"), None)
    pairs = []
    for row in rows:
        if row is seed_row:
            continue
        reference = next((r for r in rows if r["dataset"] == row["dataset"] and r["role"] == REFERENCE_ARM), None)
        if reference is not None and reference is not row:
            pairs.append((row, reference, REFERENCE_ARM))
        if seed_row is not None:
            pairs.append((row, seed_row, "seed"))
    out = []
    for task in order:
        scale = 100.0 if percent.get(task, True) else 1.0
        for row, other, against in pairs:
            a, b = row["cells"].get(task), other["cells"].get(task)
            if not a or not b or a["score"] is None or b["score"] is None:
                continue
            comparison = {"task": task, "row": row["label"], "vs": other["label"], "against": against,
                          "rows": None, "difference": a["score"] - b["score"], "ci": None, "within_noise": None,
                          "exact": None}
            a_rows = [per_row(f, task) for f in row["folders"]]
            b_rows = [per_row(f, task) for f in other["folders"]]
            if all(x is not None for x in a_rows + b_rows):
                result = stats.paired(a_rows, b_rows, resamples=resamples, seed=seed)
                if result is None:
                    notes.append(f"{task}: {row['label']} and {other['label']} share no scored prompt: no interval")
                else:
                    comparison.update(rows=result["rows"], difference=result["difference"] * scale,
                                      ci=[v * scale for v in result["ci"]], within_noise=result["within_noise"],
                                      exact=result["exact"])
            out.append(comparison)
            if against == REFERENCE_ARM:
                a.update(delta=comparison["difference"], ci=comparison["ci"], within_noise=comparison["within_noise"])
    return out


# --- rendering ---------------------------------------------------------------------------------

def _digits(percent: bool, metric: str | None = None) -> int:
    # Rates in points to 2 decimals, similarity to 3 (the paper's), a drift's KL to 4: a short LoRA run moves a
    # small model by thousandths of a nat per token.
    return 2 if percent else 4 if metric == "kl" else 3


def _cell_text(cell: dict | None, digits: int, *, latex: bool = False) -> str:
    if not cell or cell["score"] is None:
        return "-"
    text = f"{cell['score']:.{digits}f}"
    if cell.get("truncated"):  # some answers were cut at max_new_tokens (the notes say how many)
        text += "$^\\dagger$" if latex else "†"
    if cell.get("std") is not None:
        text += (" $\\pm$ " if latex else " ± ") + f"{cell['std']:.{digits}f}"
    if "delta" in cell:
        d = cell["delta"]
        if cell.get("within_noise"):
            shown = ("$\\approx$" if latex else "≈") + f"{d:+.{digits}f}"
        else:
            arrow = ("$\\uparrow$" if latex else "↑") if d > 0 else ("$\\downarrow$" if latex else "↓") if d < 0 \
                else "→"
            shown = f"{arrow}{abs(d):.{digits}f}"
        if cell.get("ci") is not None:
            low, high = cell["ci"]
            shown += f" [{low:+.{digits}f}, {high:+.{digits}f}]"
        text += f" ({shown})"
    return text


def legend(table: dict) -> list[str]:
    """What the marks in the table mean and how the intervals were made, one sentence a line."""
    cells = [c for r in table["rows"] for c in r["cells"].values()]
    b = table["bootstrap"]
    lines = []
    if any("delta" in c for c in cells):
        lines.append("(↑d [low, high]) on an arm's row: its difference from vanilla fine-tuning on the same dataset "
                     "(points for rates; raw for similarity), with its paired 95% confidence interval over the "
                     "prompts; ≈ instead of an arrow: within noise (the interval contains 0, or McNemar's exact "
                     "p >= 0.05).")
    if any(c.get("spread") == "samples" for c in cells):
        lines.append("a ± s: the mean and standard deviation over the eval's samples (--samples).")
    if any(c.get("spread") == "seeds" for c in cells):
        lines.append("rows with N seeds: the mean over N trainings that differ only in --seed, ± their standard "
                     "deviation; their intervals resample the seeds as well as the prompts.")
    if table["comparisons"]:
        lines.append(f"Intervals: {b['method']} bootstrap over the prompts, {b['resamples']} resamples, seed "
                     f"{b['seed']}; discordant: the prompts only this row / only that row scored 1 on; exact p: "
                     "McNemar's test (two-sided binomial on the discordant prompts), for 0/1 scores of one seed per "
                     "arm; per comparison, not corrected for the number of comparisons.")
    return lines


def _p_text(p: float | None) -> str:
    return "-" if p is None else "<0.001" if p < 0.001 else f"{p:.3f}"


def _verdict(c: dict) -> str:
    if c["ci"] is None:
        return "no interval"
    return "within noise" if c["within_noise"] else "higher" if c["difference"] > 0 else "lower"


def _comparison_cells(c: dict, digits: int, *, latex: bool = False) -> list[str]:
    ci = "-" if c["ci"] is None else f"[{c['ci'][0]:+.{digits}f}, {c['ci'][1]:+.{digits}f}]"
    exact = c["exact"]
    cells = [c["task"], f"{c['row']} vs {c['vs']}", "-" if c["rows"] is None else str(c["rows"]),
             f"{c['difference']:+.{digits}f}", ci, "-" if exact is None else f"{exact['up']} / {exact['down']}",
             _p_text(exact and exact["p"]), _verdict(c)]
    return [latex_escape(x) for x in cells] if latex else cells


COMPARISON_HEADER = ["task", "comparison", "prompts", "difference", "95% CI", "discordant (this / that)", "exact p",
                     "verdict"]


def _columns(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, body)])


def _markdown(header: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in body)]


def render(table: dict) -> dict[str, str]:
    """The table as terminal text, markdown, LaTeX and CSV, each with the paired comparisons and the legend."""
    tasks, rows, percent = table["tasks"], table["rows"], table["percent"]
    digits = table.get("digits") or {t: _digits(percent.get(t, True)) for t in tasks}
    comparisons, notes, keys = table["comparisons"], table["notes"], legend(table)
    header = ["Model"] + tasks
    body = [[r["label"]] + [_cell_text(r["cells"].get(t), digits.get(t, 2)) for t in tasks] for r in rows]
    tests = [_comparison_cells(c, digits.get(c["task"], 2)) for c in comparisons]
    title = "Paired differences (the row's score minus the one it is compared with):"

    terminal = _columns(header, body)
    if keys:
        terminal += "\n\n" + "\n".join(keys)
    if tests:
        terminal += f"\n\n{title}\n" + _columns(COMPARISON_HEADER, tests)
    if notes:
        terminal += "\n\n" + "\n".join(f"note: {n}" for n in notes)

    markdown = _markdown(header, body)
    if keys:
        markdown += [""] + [f"- {k}" for k in keys]
    if tests:
        markdown += ["", f"**{title}**", ""] + _markdown(COMPARISON_HEADER, tests)
    if notes:
        markdown += [""] + [f"- note: {n}" for n in notes]

    latex_rows = [" & ".join([latex_escape(r["label"])] + [_cell_text(r["cells"].get(t), digits.get(t, 2),
                                                                      latex=True) for t in tasks]) + " \\\\"
                  for r in rows]
    latex = ["\\begin{tabular}{l" + "r" * len(tasks) + "}", "\\toprule",
             " & ".join(["Model"] + [latex_escape(t) for t in tasks]) + " \\\\", "\\midrule", *latex_rows,
             "\\bottomrule", "\\end{tabular}"]
    latex += [f"% {latex_escape(k)}" for k in keys]
    if tests:
        latex += ["", f"% {title}", "\\begin{tabular}{llrrrrrl}", "\\toprule",
                  " & ".join(latex_escape(h) for h in COMPARISON_HEADER) + " \\\\", "\\midrule",
                  *(" & ".join(_comparison_cells(c, digits.get(c["task"], 2), latex=True)) + " \\\\"
                    for c in comparisons), "\\bottomrule", "\\end{tabular}"]
    return {"terminal": terminal, "markdown": "\n".join(markdown), "latex": "\n".join(latex),
            "csv": _csv(table)}


CSV_HEADER = ["row", "role", "dataset", "seeds", "folders", "task", "score", "std", "spread", "vs", "prompts",
              "difference", "ci_low", "ci_high", "within_noise", "only_row_right", "only_vs_right", "exact_p",
              "resamples", "bootstrap_seed"]


def _csv(table: dict) -> str:
    """One line per row and task (its score, `vs` empty), then one per comparison (`vs` names the other row)."""
    def num(x):
        return "" if x is None else round(x, 4)

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    by_label = {r["label"]: r for r in table["rows"]}
    for r in table["rows"]:
        for t in table["tasks"]:
            c = r["cells"].get(t)
            if c:
                writer.writerow([r["label"], r["role"], r["dataset"] or "", ";".join(map(str, r["seeds"] or [])),
                                 ";".join(r["folders"]), t, num(c["score"]), num(c.get("std")), c.get("spread") or "",
                                 *[""] * 11])
    b = table["bootstrap"]
    for c in table["comparisons"]:
        r, cell = by_label[c["row"]], by_label[c["row"]]["cells"][c["task"]]
        exact = c["exact"] or {}
        writer.writerow([r["label"], r["role"], r["dataset"] or "", ";".join(map(str, r["seeds"] or [])),
                         ";".join(r["folders"]), c["task"], num(cell["score"]), num(cell.get("std")),
                         cell.get("spread") or "", c["vs"], "" if c["rows"] is None else c["rows"],
                         num(c["difference"]), *(num(x) for x in (c["ci"] or [None, None])),
                         "" if c["within_noise"] is None else str(c["within_noise"]).lower(),
                         exact.get("up", ""), exact.get("down", ""),
                         "" if not exact else f"{exact['p']:.4g}", b["resamples"] if c["ci"] else "",
                         b["seed"] if c["ci"] else ""])
    return buf.getvalue()


def plot(table: dict, path: Path) -> None:
    """Grouped bars: one group per task, one bar per row (seed, vanilla, SDFT, ...), whiskers for a ± spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, rows = table["tasks"], table["rows"]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(tasks)), 4))
    width = 0.8 / max(1, len(rows))
    colors = {"seed": "#616C6E", "vanilla": "#A16058", "sdft": "#85BFAC"}
    for i, r in enumerate(rows):
        xs = [j + i * width for j in range(len(tasks))]
        cells = [r["cells"].get(t) or {} for t in tasks]
        ys = [c.get("score") or 0.0 for c in cells]
        errors = [c.get("std") or 0.0 for c in cells]
        ax.bar(xs, ys, width, yerr=errors if any(errors) else None, capsize=2, label=r["label"],
               color=colors.get(r["role"]), alpha=0.6 + 0.4 * (i % 2))
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=20)
    ax.set_ylabel("score (%; similarity x1)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(folders: list[str | Path], *, seed: str | Path | None = None, out: str | Path | None = None,
            resamples: int = stats.RESAMPLES, bootstrap_seed: int = stats.BOOTSTRAP_SEED) -> dict:
    """Assemble, render and (with `out`) write table.{md,tex,csv,png,json}. Returns the rendered texts.

    `resamples` and `bootstrap_seed` make the confidence intervals (sdft_train.stats); the outputs state both.
    """
    if not folders:
        raise ValueError("name at least one results folder")
    if resamples < 1:
        raise ValueError(f"--resamples must be at least 1, not {resamples}")
    table = assemble(folders, seed, resamples=resamples, bootstrap_seed=bootstrap_seed)
    texts = render(table)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for fmt, suffix in (("markdown", "md"), ("latex", "tex"), ("csv", "csv")):
            (out / f"table.{suffix}").write_text(texts[fmt] + ("" if fmt == "csv" else "\n"))
        plot(table, out / "table.png")
        (out / "table.json").write_text(json.dumps(table, indent=2, ensure_ascii=False) + "\n")
    return texts
