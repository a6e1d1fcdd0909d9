"""``report.md`` and a self-contained ``report.html`` (figures inlined) from run directories.

The report is assembled once as a list of blocks (headings, paragraphs, tables, figures) and
rendered twice, so the Markdown and HTML versions always hold the same content.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpft import RESULTS_SCHEMA as SCHEMA
from lpft.analysis import figures, tables
from lpft.errors import LpftError
from lpft.io import atomic_write_bytes, atomic_write_text, read_json

RESULTS_FILE = "results.json"
REQUIRED_FIELDS = (
    "status",
    "benchmark.name",
    "benchmark.ood",
    "model",
    "confidence",
    "seeds",
    "methods",
)
FIGURE_DIR = "figures"
REPORT_STEM = "report"
# Written into a run directory by ``lpft doctor --run-dir``; the report shows it when present.
DOCTOR_FILE = "doctor.json"


@dataclass
class Run:
    directory: Path
    results: dict[str, Any]
    label: str
    file_prefix: str


# --- loading and validating run directories ------------------------------------------------------


def load_results(run_dir: Path) -> dict[str, Any]:
    """The run's results.json, checked for the schema this report understands."""
    run_dir = Path(run_dir)
    path = run_dir / RESULTS_FILE
    if not run_dir.is_dir():
        raise LpftError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise LpftError(f"{path}: not found; expected the results.json written by `lpft run`")
    results = read_json(path)
    found = results.get("schema") if isinstance(results, dict) else type(results).__name__
    if found != SCHEMA:
        raise LpftError(f"{path}: schema is {found!r}, expected {SCHEMA!r}")
    for dotted in REQUIRED_FIELDS:
        if not has_field(results, dotted):
            raise LpftError(f"{path}: missing field '{dotted}' required by {SCHEMA}")
    return results


def has_field(document: dict[str, Any], dotted: str) -> bool:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def load_runs(run_dirs: list[Path]) -> list[Run]:
    """Each run with its label: the benchmark name, or the directory name where two runs share
    a benchmark; a number is appended where even those collide."""
    if not run_dirs:
        raise LpftError("no run directory given")
    directories = [Path(d) for d in run_dirs]
    documents = [load_results(d) for d in directories]
    names = [results["benchmark"]["name"] for results in documents]
    labels = numbered(
        [
            name if names.count(name) == 1 else directory.resolve().name
            for name, directory in zip(names, directories, strict=True)
        ],
        "{} ({})",
    )
    prefixes = numbered([slug(label) for label in labels], "{}-{}")
    return [Run(*fields) for fields in zip(directories, documents, labels, prefixes, strict=True)]


def numbered(names: list[str], pattern: str) -> list[str]:
    """Names that occur more than once get their occurrence number through ``pattern``."""
    return [
        pattern.format(name, names[:index].count(name) + 1) if names.count(name) > 1 else name
        for index, name in enumerate(names)
    ]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "run"


# --- the document model --------------------------------------------------------------------------


@dataclass
class Heading:
    text: str
    level: int


@dataclass
class Paragraph:
    text: str


@dataclass
class Alert:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    """``rows`` hold (text, mark) cells: a true mark is bold, ``tables.TIE`` italic (tied for
    best); ``groups`` puts (label, span) above the header, e.g. a run's label over its
    columns."""

    header: list[str]
    rows: list[list[tuple[str, Any]]]
    groups: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class Image:
    relative_path: str
    png: bytes
    alt: str
    caption: str


Block = Heading | Paragraph | Alert | Bullets | Table | Image


# --- report content ------------------------------------------------------------------------------


def report_title(runs: list[Run]) -> str:
    return f"lpft report: {', '.join(run.label for run in runs)}"


def report_blocks(runs: list[Run]) -> list[Block]:
    """Everything in the report, in reading order; figures are rendered here."""
    styles = figures.method_styles(key for run in runs for key in run.results["methods"])
    blocks: list[Block] = [Heading(report_title(runs), 1)]
    blocks += [Alert(partial_warning(run)) for run in runs if run.results["status"] != "complete"]
    blocks += accuracy_section(runs)
    blocks += runs_section(runs)
    blocks += failures_section(runs)
    for run in runs:
        blocks += doctor_section(run)
        blocks += run_section(run, styles, len(runs) > 1)
    return blocks


def doctor_section(run: Run) -> list[Block]:
    """The ``lpft doctor`` diagnosis saved in the run directory, if any."""
    path = run.directory / DOCTOR_FILE
    if not path.is_file():
        return []
    doctor = read_json(path)
    rows = [
        [
            (item["name"], None),
            (f"{item['value']:.3f}", None),
            ("" if item["reference"] is None else f"{item['reference']:.3f}", None),
            (item["reading"], None),
        ]
        for item in doctor["indicators"]
    ]
    costs = ", ".join(f"{m} {s:.0f} s" for m, s in doctor["estimated_cost_seconds"].items())
    return [
        Heading(f"{run.label}: lpft doctor", 2),
        Paragraph(
            f"Recommendation: {doctor['recommendation']} (confidence "
            f"{doctor['confidence']:.0%}): {doctor['reason']}. Measured by cheap probes in "
            f"{doctor['doctor_seconds']:.0f} s, from ID labels and unlabeled target images."
        ),
        Table(["indicator", "value", "ID reference", "reading"], rows),
        Paragraph(f"Estimated cost of a full run of each method: {costs}."),
    ]


def partial_warning(run: Run) -> str:
    return (
        f"{run.label}: results.json has status '{run.results['status']}': the run has not "
        "finished, so cells still to come are missing and candidates not evaluated yet have no "
        "test or OOD accuracy."
    )


def accuracy_section(runs: list[Run]) -> list[Block]:
    labelled = [(run.label, run.results) for run in runs]
    blocks: list[Block] = [
        Heading("Accuracy", 2),
        Paragraph(tables.multi_run_caption(labelled)),
        accuracy_table(tables.multi_run_table(labelled)),
    ]
    notes = [f"{run.label}: {note}" for run in runs for note in tables.warnings(run.results)]
    if notes:
        blocks.append(Bullets(notes))
    for run in runs:
        blocks += contrast_blocks(run, len(runs) > 1)
    oracle_runs = [(run.label, run.results) for run in runs if tables.has_oracle(run.results)]
    if oracle_runs:
        blocks += [
            Heading("Oracle: selected on OOD validation (not a protocol result)", 2),
            Paragraph(tables.oracle_caption(oracle_runs[0][1])),
            accuracy_table(tables.multi_run_table(oracle_runs, tables.ORACLE)),
        ]
    return blocks


def accuracy_table(table: tables.MultiRunTable) -> Table:
    header = ["method", "setting"] + [col.title for g in table.groups for col in g.columns]
    body = [
        [
            (row.method, None),
            (tables.multi_run_notes(row), None),
            *tables.multi_run_cells(table, row),
        ]
        for row in table.rows
    ]
    several = len(table.groups) > 1
    groups = [("", 2)] + [(g.label, len(g.columns)) for g in table.groups] if several else []
    return Table(header, body, groups)


def contrast_blocks(run: Run, several: bool) -> list[Block]:
    """The paired differences between methods of one run, resolved ones in bold."""
    found = tables.contrasts(run.results)
    if not found:
        return []
    cols = tables.columns(run.results)
    body = [
        [(contrast.label, None)]
        + [
            (tables.format_difference(contrast.values[col.key]), contrast.resolved(col.key))
            for col in cols
        ]
        for contrast in found
    ]
    title = f"Paired contrasts: {run.label}" if several else "Paired contrasts"
    return [
        Heading(title, 3),
        Paragraph(tables.contrast_caption(run.results)),
        Table(["contrast"] + [col.title for col in cols], body),
    ]


def runs_section(runs: list[Run]) -> list[Block]:
    header = [
        "run",
        "directory",
        "model",
        "seeds",
        "status",
        "ID train / val / test",
        "OOD sets",
        "device",
        "wall time (last invocation)",
    ]
    body = [[(cell, None) for cell in run_facts(run)] for run in runs]
    return [Heading("Runs", 2), Table(header, body)]


def run_facts(run: Run) -> list[str]:
    results = run.results
    benchmark = results["benchmark"]
    sizes = benchmark.get("sizes", {})
    ood = ", ".join(f"{name} ({info['size']})" for name, info in benchmark["ood"].items())
    return [
        run.label,
        str(run.directory),
        results["model"],
        str(results["seeds"]),
        results["status"],
        " / ".join(str(sizes.get(k, "?")) for k in ("id_train", "id_val", "id_test")),
        ood or "none",
        str(results.get("device", "?")),
        f"{results.get('wall_seconds', float('nan')):.0f} s",
    ]


def failures_section(runs: list[Run]) -> list[Block]:
    items = [item for run in runs for item in failed_cells(run)]
    if not items:
        return [Heading("Failed cells", 2), Paragraph("None: every cell finished.")]
    return [Heading("Failed cells", 2), Bullets(items)]


def failed_cells(run: Run) -> list[str]:
    """One line per failed cell (run, method, seed, hyperparameters, error) and per cell that a
    non-finite loss stopped after a valid epoch."""
    items = []
    for key, entry in run.results["methods"].items():
        for seed in figures.distinct_seeds(entry):
            seed_text = f"seed {seed['seed']}" if entry["seed_dependent"] else "all seeds"
            for cell in seed["cells"]:
                where = f"{run.label} · {key} · {seed_text} · {format_hparams(cell['hparams'])}"
                if cell["status"] == "failed":
                    items.append(f"{where}: {cell.get('error') or 'no error message'}")
                items += [
                    f"{where}: stopped by a non-finite loss in epoch {c['diverged_at_epoch']}; "
                    f"its best epoch before that ({c.get('best_epoch')}) is kept"
                    for c in cell["candidates"]
                    if c.get("diverged_at_epoch")
                ]
    return items


def format_hparams(hparams: dict[str, Any]) -> str:
    if not hparams:
        return "whole grid"
    return ", ".join(
        f"{name}={value:g}" if isinstance(value, int | float) else f"{name}={value}"
        for name, value in hparams.items()
    )


def run_section(run: Run, styles: dict[str, figures.MethodStyle], several: bool) -> list[Block]:
    blocks: list[Block] = [Heading(f"{run.label}: distortion and figures", 2)]
    if several:
        blocks.append(Paragraph(f"Run directory: {run.directory}"))
    blocks += distortion_table(run)
    for spec in figures.FIGURE_SPECS:
        figure = spec.build(run.results, styles, run.label)
        if figure is not None:
            blocks.append(
                Image(
                    f"{FIGURE_DIR}/{run.file_prefix}-{spec.name}.png",
                    figures.png_bytes(figure),
                    f"{run.label}: {spec.name.replace('-', ' ')}",
                    spec.caption,
                )
            )
    return blocks


def distortion_table(run: Run) -> list[Block]:
    methods = [
        (key, entry["summary"]["distortion"])
        for key, entry in figures.visible_methods(run.results)
        if "distortion" in entry["summary"]
    ]
    if not methods:
        return []
    splits = ["id_test", *figures.ood_names(run.results)]
    header = ["method"] + [figures.split_title(s) for s in splits]
    body = [
        [(key, None)] + [(format_distortion(distortion[s]), None) for s in splits]
        for key, distortion in methods
    ]
    confidence = run.results["confidence"]
    return [
        Paragraph(
            "Penultimate feature distortion of the selected candidates: mean L2 change ± "
            f"{confidence:.0%} t-interval over seeds, cut at 0 where it would reach below "
            "(a change cannot be negative); linear CKA, 1 = unchanged."
        ),
        Table(header, body),
    ]


def format_distortion(measures: dict[str, dict[str, float]]) -> str:
    """``mean ± half``, or ``mean [0, high]`` when the interval would reach below zero."""
    l2, cka = measures["l2"], measures["cka"]
    mean, half = l2["mean"], l2["half_width"]
    if math.isnan(half):
        spread = ""
    elif half > mean:
        spread = f" [0, {figures.significant(mean + half)}]"
    else:
        spread = f" ± {figures.significant(half)}"
    return f"{figures.significant(mean)}{spread} (CKA {cka['mean']:.3f})"


# --- rendering -----------------------------------------------------------------------------------


def markdown_text(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Alert):
            parts.append(f"> **Warning:** {block.text}")
        elif isinstance(block, Bullets):
            parts.append("\n".join(f"- {markdown_text(item)}" for item in block.items))
        elif isinstance(block, Table):
            parts.append(markdown_table(block))
        else:
            parts.append(f"![{block.alt}]({block.relative_path})\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


def grouped_titles(table: Table) -> list[str]:
    """Markdown has a single header row: each title carries its group's label instead."""
    labels = [label for label, span in table.groups for _ in range(span)]
    if not labels:
        return table.header
    return [
        f"{label} · {title}" if label else title
        for label, title in zip(labels, table.header, strict=True)
    ]


def markdown_table(table: Table) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    header = [markdown_text(h) for h in grouped_titles(table)]
    lines = [line(header), "|" + "---|" * len(header)]
    for row in table.rows:
        lines.append(line([markdown_cell(text, mark) for text, mark in row]))
    return "\n".join(lines)


def markdown_cell(text: str, mark: Any) -> str:
    if mark == tables.TIE:
        return f"*{markdown_text(text)}*"
    return f"**{markdown_text(text)}**" if mark else markdown_text(text)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; } td { font-variant-numeric: tabular-nums; }
th.group { text-align: center; } .scroll { overflow-x: auto; }
.warning { background: #fff3cd; border: 1px solid #e0b000; padding: 0.6em 1em; margin: 1em 0; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #555; max-width: 900px; }
"""


def render_html(title: str, blocks: list[Block]) -> str:
    body = "\n".join(html_block(block) for block in blocks)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def html_block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{html.escape(block.text)}</h{block.level}>"
    if isinstance(block, Paragraph):
        return f"<p>{html.escape(block.text)}</p>"
    if isinstance(block, Alert):
        return f'<div class="warning"><strong>Warning:</strong> {html.escape(block.text)}</div>'
    if isinstance(block, Bullets):
        items = "".join(f"<li>{html.escape(item)}</li>" for item in block.items)
        return f"<ul>{items}</ul>"
    if isinstance(block, Table):
        return html_table(block)
    data = base64.b64encode(block.png).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}">'
        f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
    )


def html_table(table: Table) -> str:
    rows = []
    if table.groups:
        spans = "".join(
            f'<th class="group" colspan="{span}">{html.escape(label)}</th>'
            for label, span in table.groups
        )
        rows.append(f"<tr>{spans}</tr>")
    rows.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in table.header) + "</tr>")
    for row in table.rows:
        cells = "".join(f"<td>{html_cell(text, mark)}</td>" for text, mark in row)
        rows.append(f"<tr>{cells}</tr>")
    return '<div class="scroll"><table>\n' + "\n".join(rows) + "\n</table></div>"


def html_cell(text: str, mark: Any) -> str:
    if mark == tables.TIE:
        return f"<em>{html.escape(text)}</em>"
    return f"<strong>{html.escape(text)}</strong>" if mark else html.escape(text)


# --- writing -------------------------------------------------------------------------------------


def write_report(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """Write report.md, report.html and the figures (PNG) for ``run_dirs`` into ``out_dir``.

    Returns the written files. Raises LpftError for a directory without a readable
    ``lpft-results-v1`` results.json.
    """
    runs = load_runs([Path(d) for d in run_dirs])
    out_dir = Path(out_dir)
    blocks = report_blocks(runs)
    written = []
    for image in (b for b in blocks if isinstance(b, Image)):
        path = out_dir / image.relative_path
        atomic_write_bytes(path, image.png)
        written.append(path)
    markdown_path = out_dir / f"{REPORT_STEM}.md"
    html_path = out_dir / f"{REPORT_STEM}.html"
    atomic_write_text(markdown_path, render_markdown(blocks))
    atomic_write_text(html_path, render_html(report_title(runs), blocks))
    return [markdown_path, html_path, *written]
