"""Rendering a diff: the terminal table, report.md (from the Jinja template report.md.j2), plots, LaTeX tables.

Everything here reads the statistics (stats.json's dict, from
sdft_data.diff.stats) and never the data, so a report can be re-rendered from
a stats.json alone. For a paper appendix: every plot is written as PNG (for
report.md and the dataset card) and PDF (vector, for LaTeX), and the main
tables as booktabs LaTeX under tables/.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from pathlib import Path

import polars as pl

from ..check import REASON_MEANINGS

TEMPLATE = Path(__file__).with_name("report.md.j2")
# Every file a report may hold besides stats.json and report.md; a re-render removes the ones it no longer makes.
PLOTS = ("reasons", "lengths", "similarity", "markers", "gap")
PLOT_FORMATS = ("png", "pdf")
TABLES = ("outcome", "lengths", "markers", "openings", "ngrams", "gap")



def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def _num(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.3f}"
    return f"{int(x):,}"


def _length(x) -> str:
    return "-" if x is None else f"{x:,.1f}".removesuffix(".0")


def _meaning(reason: str) -> str:
    return {
        "rewritten": "the final response differs from the original (the rewrite was kept)",
        "kept": "the final response is the original",
    }.get(reason, REASON_MEANINGS.get(reason, ""))


def _points(delta: float | None) -> str:
    """A change of share in percentage points: +37.3 pp."""
    return "-" if delta is None else f"{100 * delta:+.1f} pp"


def _marker_shift(m: dict) -> str:
    o, r = m["original"]["share"], m["rewrite"]["share"]
    return "-" if o is None or r is None else _points(r - o)


def _code(text: str) -> str:
    """Inline code for a markdown table cell (backticks inside get a longer fence; pipes are escaped)."""
    text = str(text).replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def render_table(stats: dict) -> str:
    """A compact plain-text summary for the terminal."""
    rows = stats["rows"]
    lines = [
        f"{stats['recipe']['name']}: {rows:,} rows, {stats['accepted']:,} rewritten ({_pct(stats['accepted'], rows)}), "
        f"{stats['fallback']:,} kept the original"
    ]
    lines.append(f"  {'reason':<26}{'rows':>10}{'share':>9}")
    for reason, n in stats["by_reason"].items():
        lines.append(f"  {reason:<26}{n:>10,}{_pct(n, rows):>9}")
    if stats.get("recheck"):
        rc = stats["recheck"]
        lines.append(f"  recipe checks on the rewrites: {rc['passed']:,} of {rc['rows']:,} pass ({_pct(rc['passed'], rc['rows'])})")
    lines.append(f"  {'median length':<26}{'original':>10}{'rewrite':>10}{'final':>10}")
    for unit, d in stats["length"].items():
        lines.append(f"  {unit:<26}" + "".join(f"{_length(d[s]['median']):>10}" for s in ("original", "rewrite", "final")))
    sim = stats.get("similarity")
    if sim:
        lines.append(
            f"  ROUGE-L F1 original vs rewrite: mean {sim['rouge_l_f1']['mean']:.3f}, median {sim['rouge_l_f1']['median']:.3f}"
            f" ({sim['sampled']:,} of {sim['rows']:,} rewrites)"
        )
    ans = stats.get("answer_agreement")
    if ans:
        r, f = ans["rewrite"], ans["final"]
        lines.append(f"  answer agreement ({ans['kind']}): rewrites {_pct(r['agree'], r['rows'])}, final {_pct(f['agree'], f['rows'])}")
    lines += _wording_lines(stats)
    lines += _gap_lines(stats)
    ag = stats.get("against")
    if ag:
        lines.append(f"  against {ag['before']}: {ag['changed']:,} of {ag['rows_compared']:,} final responses changed")
    return "\n".join(lines)



def _wording_lines(stats: dict) -> list[str]:
    """The markers whose rate moved most, for the terminal."""
    wording = stats.get("wording")
    if not wording or not wording["rows_with_rewrite"]:
        return []
    moved = sorted((m for m in wording["markers"] if m["rewrite"]["rows"] != m["original"]["rows"]),
                   key=lambda m: -abs((m["rewrite"]["share"] or 0) - (m["original"]["share"] or 0)))[:4]
    if not moved:
        return ["  marker phrases: no change in rate between originals and rewrites"]
    parts = [f"{m['marker']} {m['original']['rows']:,} -> {m['rewrite']['rows']:,}" for m in moved]
    return [f"  marker phrases in originals -> rewrites (of {wording['rows_with_rewrite']:,}): " + ", ".join(parts)]


def _headline(stats: dict) -> str:
    """The findings in two or three sentences, for the top of the report."""
    rows = stats["rows"]
    parts = [f"**Summary.** Of {rows:,} rows, {stats['accepted']:,} ({_pct(stats['accepted'], rows)}) now carry the "
             f"model's rewrite and {stats['fallback']:,} ({_pct(stats['fallback'], rows)}) keep the original response."]
    fallbacks = [(r, n) for r, n in stats["by_reason"].items() if r not in ("accepted", "rewritten", "kept")]
    if fallbacks:
        reason, n = max(fallbacks, key=lambda kv: kv[1])
        parts.append(f"The most common reason to fall back is `{reason}` ({n:,} row{'' if n == 1 else 's'}).")
    words = (stats.get("length") or {}).get("words")
    if words and words["rewrite"]["median"] is not None:
        parts.append(f"Median length in words: original {_length(words['original']['median'])}, "
                     f"rewrite {_length(words['rewrite']['median'])}, final {_length(words['final']['median'])}.")
    sim = stats.get("similarity")
    if sim:
        parts.append(f"Rewrites keep a median ROUGE-L F1 of {sim['rouge_l_f1']['median']:.2f} against the original "
                     f"(word-set Jaccard {sim['word_jaccard']['median']:.2f}).")
    ans = stats.get("answer_agreement")
    if ans and ans["rewrite"]["rows"]:
        what = "last integer" if ans["kind"] == "last_integer" else "reference call" if ans["kind"] == "function_call" else "answer"
        parts.append(f"{_pct(ans['rewrite']['agree'], ans['rewrite']['rows'])} of rewrites keep the original's {what}.")
    markers = _marker_headline(stats)
    if markers:
        parts.append(f"Marker phrases: {markers}")
    return " ".join(parts)


def _cut(text: str, limit: int, markdown: bool = False) -> str:
    text = text if len(text) <= limit else text[:limit].rstrip() + " …"
    if markdown:
        text = html.escape(" ".join(text.split()))
    return text


def _cell(text: str | None, reason: str | None = None) -> str:
    if text is None:
        return "<em>(no rewrite: the generation failed)</em>" if reason == "generation_failed" else "<em>(no rewrite)</em>"
    if text == "":
        return "<em>(empty)</em>"
    return html.escape(_cut(text, 700)).replace("\n", "<br>")



def _marker_headline(stats: dict) -> str | None:
    """The marker whose rate rose most, as one sentence (None when none rose)."""
    wording = stats.get("wording") or {}
    risen = [m for m in wording.get("markers") or [] if m["rewrite"]["rows"] > m["original"]["rows"]]
    if not risen:
        return None
    top = sorted(risen, key=lambda m: (m["original"]["share"] or 0) - (m["rewrite"]["share"] or 0))[:2]
    said = " and ".join(f"`{m['marker']}` in {m['rewrite']['rows']:,} (against {m['original']['rows']:,} of their originals)"
                        for m in top)
    return f"Of {wording['rows_with_rewrite']:,} rewrites, {said}."


# --------------------------------------------------------------------------
# report.md


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)), autoescape=False,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    env.filters.update(num=_num, pct=_pct, meaning=_meaning, points=_points, shift=_marker_shift, code=_code,
                       signed=_signed)
    return env


def render_markdown(stats: dict, examples: pl.DataFrame | None, plots: list[str], tables: list[str] = ()) -> str:
    """report.md: the template report.md.j2 filled with `stats` (plots and tables: the file names written)."""
    recipe = stats["recipe"]
    inputs = stats.get("inputs") or {}
    rows = stats["rows"]
    sampled = {u: d["sampled_rows"] for u, d in stats["length"].items() if d.get("sampled_rows")}
    length_rows = []
    for unit, d in stats["length"].items():
        label = {"chars": "characters", "words": "words", "tokens": f"tokens ({stats.get('tokenizer')})"}[unit]
        length_rows.append((label, [" / ".join(_length(d[s][k]) for k in ("mean", "median", "p90"))
                                    for s in ("original", "rewrite", "final")]))
    sim = stats.get("similarity")
    ans = stats.get("answer_agreement")
    wording = stats.get("wording")
    openings = []
    if wording:
        rw, og = wording["openings"]["rewrite"], wording["openings"]["original"]
        openings = [(rw[i] if i < len(rw) else None, og[i] if i < len(og) else None) for i in range(max(len(rw), len(og)))]
    inferred = stats["reasons_inferred"]
    second = "Distilled" if inferred else "Rewrite"
    groups = []
    if examples is not None and examples.height:
        for (group,), g in examples.group_by("group", maintain_order=True):
            cells = []
            for row in g.iter_rows(named=True):
                rewrite = ("<em>(same as the original)</em>" if inferred and row["rewrite"] is None
                           else _cell(row["rewrite"], row["reason"]))
                cells.append({"row_id": row["row_id"], "instruction_cell": _cut(row["instruction"] or "", 300, markdown=True),
                              "original_cell": _cell(row["original"]), "rewrite_cell": rewrite})
            groups.append((group, cells))
    context = dict(
        stats=stats, recipe=recipe, rows=rows, inferred=inferred,
        described=", ".join(f"{k}: `{v}`" for k, v in inputs.items() if isinstance(v, str) and v),
        headline=_headline(stats), mismatches=(stats.get("alignment") or {}).get("instruction_mismatches"),
        plots=plots, recheck=stats.get("recheck"),
        # The recipe's check says what it does (Check.description); the shared checks come first.
        task_check="banned phrases and \"Your turn\", then " + (recipe.get("check_description") or recipe["check"]),
        wording=wording if wording and wording["rows_with_rewrite"] else None, openings=openings,
        length_note="".join(f" {u.capitalize()} are counted on a seeded uniform sample of {n:,} rows."
                            for u, n in sampled.items()),
        length_rows=length_rows,
        sim=sim,
        sim_scope=(f"a uniform random sample of {sim['sampled']:,} of the {sim['rows']:,} rows with a rewrite (seed {sim['seed']})"
                   if sim and sim["sampled"] < sim["rows"] else f"all {sim['rows']:,} rows with a rewrite" if sim else ""),
        answers=ans,
        answers_what=("" if not ans else "whose last integer equals the original's" if ans["kind"] == "last_integer"
                      else "that contain the original's function call (whitespace and quotes normalised as in the paper)"
                      if ans["kind"] == "function_call" else "whose answer agrees with the original's"),
        against=stats.get("against"), examples=groups, second=second,
        tables=[f"`tables/{t}`" for t in tables],
        gap=stats.get("gap"), gap_line=gap_headline(stats.get("gap")),
    )
    return _environment().get_template(TEMPLATE.name).render(**context)


# --------------------------------------------------------------------------
# Plots


def _save(fig, out_dir: Path, name: str) -> str:
    """`name`.png (for markdown) and `name`.pdf (vector, for LaTeX); returns the PNG's name."""
    for fmt in PLOT_FORMATS:
        fig.savefig(out_dir / f"{name}.{fmt}", dpi=150 if fmt == "png" else None)
    return f"{name}.png"


def write_plots(stats: dict, out_dir: Path) -> list[str]:
    """reasons, lengths, similarity and markers plots (PNG and PDF) from `stats`. Returns the PNG names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    # Embedded TrueType fonts: a PDF a journal's checker accepts, with text that stays text.
    plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42})
    written = []
    rows = stats["rows"]
    colors = {"original": "#4C72B0", "rewrite": "#DD8452", "final": "#55A868"}

    reasons = list(stats["by_reason"].items())
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(reasons) + 1.2))
    labels = [r for r, _ in reasons][::-1]
    counts = [n for _, n in reasons][::-1]
    bar_colors = ["#55A868" if r in ("accepted", "rewritten") else "#C44E52" for r in labels]
    ax.barh(labels, counts, color=bar_colors)
    for y, n in enumerate(counts):
        ax.text(n, y, f" {n:,} ({_pct(n, rows)})", va="center", fontsize=9)
    ax.set_xlim(0, max(counts) * 1.3 if counts else 1)
    ax.set_xlabel("rows")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{stats['recipe']['name']}: rows by outcome (n = {rows:,})")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    written.append(_save(fig, out_dir, "reasons"))
    plt.close(fig)

    units = list(stats["length"])
    fig, axes = plt.subplots(1, len(units), figsize=(4.6 * len(units), 3.6), squeeze=False)
    for ax, unit in zip(axes[0], units):
        d = stats["length"][unit]
        hist = d["histogram"]
        edges = hist["edges"]
        log = hist.get("scale") == "log"
        # Original filled, distilled as a line: both stay visible where they coincide.
        for side, label, fill in (("original", "original", True), ("final", "distilled (final)", False)):
            ax.stairs(hist[side], edges, label=f"{label}, median {_length(d[side]['median'])}", color=colors[side],
                      linewidth=1.6, fill=fill, alpha=0.35 if fill else 1.0)
            if d[side]["median"] is not None:
                ax.axvline(max(d[side]["median"], edges[0]), color=colors[side], linestyle=":", linewidth=1)
        if log:  # skewed lengths: log-spaced bins on a log axis keep short and long responses readable
            ax.set_xscale("log")
            ax.set_xlabel(f"{unit} per response (log scale)")
        else:
            ax.set_xlabel(f"{unit} per response (last bin: {_length(edges[-2])} or more)")
        ax.set_ylabel("rows")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, frameon=False)
    fig.suptitle(f"{stats['recipe']['name']}: response length, original vs distilled")
    fig.tight_layout()
    written.append(_save(fig, out_dir, "lengths"))
    plt.close(fig)

    sim = stats.get("similarity")
    if sim:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for key, label, color in (("rouge_l_f1", "ROUGE-L F1", "#4C72B0"), ("word_jaccard", "word-set Jaccard", "#DD8452")):
            s = sim[key]
            ax.stairs(s["histogram"]["rewrite"], s["histogram"]["edges"], label=f"{label}, median {s['median']:.2f}",
                      color=color, linewidth=1.6)
        ax.set_xlabel("similarity of rewrite to original")
        ax.set_ylabel("rows")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, 1)
        scope = f"sample of {sim['sampled']:,}" if sim["sampled"] < sim["rows"] else f"{sim['rows']:,} rewrites"
        ax.set_title(f"{stats['recipe']['name']}: how much the rewrites keep ({scope})")
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, frameon=False)
        fig.tight_layout()
        written.append(_save(fig, out_dir, "similarity"))
        plt.close(fig)

    wording = stats.get("wording")
    shown = [m for m in (wording or {}).get("markers") or [] if m["original"]["rows"] or m["rewrite"]["rows"]]
    if shown:
        import numpy as np

        fig, ax = plt.subplots(figsize=(7, 0.4 * len(shown) + 1.4))
        y = np.arange(len(shown))[::-1]
        for offset, side, label in ((0.2, "original", "originals"), (-0.2, "rewrite", "rewrites")):
            shares = [100 * (m[side]["share"] or 0) for m in shown]
            ax.barh(y + offset, shares, height=0.38, color=colors[side], label=label)
            for yy, share, m in zip(y + offset, shares, shown):
                ax.text(share, yy, f" {m[side]['rows']:,}", va="center", fontsize=8)
        ax.set_yticks(y, [m["marker"] for m in shown])
        ax.set_xlabel(f"% of the {wording['rows_with_rewrite']:,} rows with a rewrite")
        ax.set_title(f"{stats['recipe']['name']}: marker phrases, originals vs rewrites")
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(fontsize=8, frameon=False, loc="lower right")
        fig.tight_layout()
        written.append(_save(fig, out_dir, "markers"))
        plt.close(fig)
    return written


# --------------------------------------------------------------------------
# LaTeX tables (booktabs), for an appendix: \input{tables/markers.tex}

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text) -> str:
    return "".join(_LATEX_ESCAPES.get(c, c) for c in str(text))


def _tt(text) -> str:
    return r"\texttt{" + latex_escape(text) + "}"


def latex_table(header: list[str], rows: list[list[str]], *, align: str, caption: str, label: str) -> str:
    """A booktabs table; cells are LaTeX already (escape them with latex_escape)."""
    lines = [r"% made by sdft-data diff; needs \usepackage{booktabs}", r"\begin{table}[ht]", r"\centering", r"\small",
             rf"\caption{{{caption}}}", rf"\label{{{label}}}", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def _lpct(n: int, total: int) -> str:
    return latex_escape(_pct(n, total))


def latex_tables(stats: dict) -> dict[str, str]:
    """{name: LaTeX} for the report's main tables: outcome, lengths, markers, openings, n-grams."""
    name = latex_escape(stats["recipe"]["name"])
    rows = stats["rows"]
    out = {"outcome": latex_table(
        ["reason", "rows", "share"],
        [[_tt(r), f"{n:,}", _lpct(n, rows)] for r, n in stats["by_reason"].items()],
        align="lrr", caption=f"{name}: rows by outcome ({rows:,} rows).", label=f"tab:sdft-{name}-outcome")}
    length_rows = []
    for unit, d in stats["length"].items():
        for side in ("original", "rewrite", "final"):
            s = d[side]
            length_rows.append([latex_escape(unit), side, *(latex_escape(_length(s[k])) for k in ("mean", "median", "p90", "max"))])
    out["lengths"] = latex_table(["unit", "response", "mean", "median", "p90", "max"], length_rows, align="llrrrr",
                                 caption=f"{name}: response lengths (rewrites: rows that have one).",
                                 label=f"tab:sdft-{name}-lengths")
    wording = stats.get("wording")
    if wording and wording["rows_with_rewrite"]:
        n = wording["rows_with_rewrite"]
        out["markers"] = latex_table(
            ["marker", "kind", "originals", "rewrites", "change"],
            [[_tt(m["marker"]), latex_escape(m["group"]), f"{m['original']['rows']:,} ({_lpct(m['original']['rows'], n)})",
              f"{m['rewrite']['rows']:,} ({_lpct(m['rewrite']['rows'], n)})", latex_escape(_marker_shift(m))]
             for m in wording["markers"]],
            align="llrrr", caption=f"{name}: rows containing each marker phrase, originals against rewrites"
                                   f" ({n:,} rows with a rewrite).", label=f"tab:sdft-{name}-markers")
        rw, og = wording["openings"]["rewrite"], wording["openings"]["original"]
        out["openings"] = latex_table(
            ["rewrites", "rows", "originals", "rows"],
            [[_tt(rw[i]["phrase"]) if i < len(rw) else "", f"{rw[i]['rows']:,}" if i < len(rw) else "",
              _tt(og[i]["phrase"]) if i < len(og) else "", f"{og[i]['rows']:,}" if i < len(og) else ""]
             for i in range(max(len(rw), len(og)))],
            align="lrlr", caption=f"{name}: most common opening phrases (first {wording['openings']['words']} words).",
            label=f"tab:sdft-{name}-openings")
        grams = wording["ngrams"]
        gram_rows = []
        for k, part in grams["by_n"].items():
            for direction in ("over", "under"):
                for g in part[direction]:
                    gram_rows.append([_tt(g["ngram"]), k, "+" if direction == "over" else "-",
                                      f"{g['rewrite_rows']:,}", f"{g['original_rows']:,}",
                                      latex_escape(_points(g["delta"])), f"{g['z']:.1f}"])
        out["ngrams"] = latex_table(
            ["n-gram", "n", "", "rewrites", "originals", "change", "z"], gram_rows, align="lclrrrr",
            caption=f"{name}: n-grams most over- (+) and under-represented (-) in rewrites against their originals"
                    f" (rows holding each, of {grams['rows']:,}).", label=f"tab:sdft-{name}-ngrams")
    out.update(gap_latex(stats))
    return out


# --------------------------------------------------------------------------
# Writing the report folder


def write_report(stats: dict, examples: pl.DataFrame | None, out_dir: str | os.PathLike) -> Path:
    """Write stats.json, report.md, the plots and tables/ into `out_dir`, all or nothing (staged in a temp folder)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        plots = write_plots(stats, stage) + write_gap_plot(stats, stage)
        tables = latex_tables(stats)
        (stage / "tables").mkdir()
        for name, text in tables.items():
            (stage / "tables" / f"{name}.tex").write_text(text)
        (stage / "stats.json").write_text(json.dumps(stats, indent=2, ensure_ascii=False) + "\n")
        (stage / "report.md").write_text(render_markdown(stats, examples, plots, [f"{t}.tex" for t in tables]))
        out.mkdir(exist_ok=True)
        made = {p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()}
        ours = [f"{p}.{fmt}" for p in PLOTS for fmt in PLOT_FORMATS] + [f"tables/{t}.tex" for t in TABLES]
        for stale in ours:
            if stale not in made and (out / stale).exists():
                (out / stale).unlink()
        (out / "tables").mkdir(exist_ok=True)
        for rel in sorted(made):
            os.replace(stage / rel, out / rel)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out


# --------------------------------------------------------------------------
# The gap (stats["gap"], from sdft_data.gap): terminal line, plot, LaTeX table


def _signed(x) -> str:
    return "-" if x is None else f"{x:+.3f}"


def gap_headline(gap: dict | None) -> str | None:
    from ..gap import headline

    return headline(gap)


def _gap_lines(stats: dict) -> list[str]:
    gap = stats.get("gap")
    if not gap or not gap["paired"]["rows"]:
        return []
    p, gain = gap["paired"], gap["sdft"]["mean_gain"]
    return [f"  log-likelihood per token under the seed model, rewrite - original: mean {p['mean']:+.3f} nats, "
            f"rewrite more likely in {p['rewrite_more_likely']:,} of {p['rows']:,} rows; SDFT responses - originals: "
            + ("-" if gain is None else f"{gain:+.3f}")]


def write_gap_plot(stats: dict, out_dir: Path) -> list[str]:
    """gap.png/.pdf: each row's log-likelihood per token under the seed model, original (x) against rewrite
    (y), accepted and fallen back apart; [] when the stats have no gap."""
    gap = stats.get("gap")
    points = (gap or {}).get("points")
    if not points or not points["original"]:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42})
    xs, ys, acc = points["original"], points["rewrite"], points["accepted"]
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    for flag, label, color in ((True, "accepted", "#55A868"), (False, "fell back", "#C44E52")):
        px = [x for x, a in zip(xs, acc) if a is flag]
        py = [y for y, a in zip(ys, acc) if a is flag]
        if px:
            ax.scatter(px, py, s=10, alpha=0.6, color=color, label=f"{label} ({len(px):,})", linewidths=0)
    lo, hi = min(xs + ys), max(xs + ys)
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="#888888", linewidth=1, linestyle="--",
            label="equally likely")
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("original: log-likelihood per token (nats)")
    ax.set_ylabel("rewrite: log-likelihood per token (nats)")
    shown = f"{len(xs):,} rows" + (" (a seeded sample)" if points.get("sampled") else "")
    ax.set_title(f"{stats['recipe']['name']}: under {gap.get('model') or 'the seed model'}, {shown}", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.tight_layout()
    name = _save(fig, out_dir, "gap")
    plt.close(fig)
    return [name]


def gap_latex(stats: dict) -> dict[str, str]:
    """{"gap": LaTeX} when the stats have a gap: originals, rewrites and their difference under the seed model."""
    gap = stats.get("gap")
    if not gap:
        return {}
    name = latex_escape(stats["recipe"]["name"])

    def row(label: str, part: dict, more: str = "") -> list[str]:
        return [label, f"{part['rows']:,}", *(latex_escape("-" if part[k] is None else f"{part[k]:+.3f}")
                                             for k in ("mean", "median")), more]

    rows = [row("originals", gap["original"]), row("rewrites", gap["rewrite"])]
    for key, label in (("paired", "rewrite $-$ original"), ("accepted", r"\quad accepted"),
                       ("fallback", r"\quad fell back")):
        part = gap[key]
        rows.append(row(label, part, f"{part['rewrite_more_likely']:,}" if part["rows"] else ""))
    sdft = gap["sdft"]
    gain = "-" if sdft["mean_gain"] is None else f"{sdft['mean_gain']:+.3f}"
    rows.append(["SDFT response $-$ original", f"{sdft['rows']:,}", latex_escape(gain), "", ""])
    return {"gap": latex_table(
        ["", "rows", "mean", "median", "rewrite more likely"], rows, align="lrrrr",
        caption=f"{name}: mean log-likelihood per token (nats) under the seed model "
                f"{_tt(gap.get('model') or '?')}, after the training prompt.", label=f"tab:sdft-{name}-gap")}
