"""How the checkpoints scored: a table with intervals and losses, a plot, the best marked.
Used by the checkpoint report and by the run's evaluation report."""

from __future__ import annotations

import json

from eval.render import Image, Report, Section, Table, Text, png_of


def _fmt(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def checkpoint_table(scores: dict) -> Table:
    """One row per checkpoint: each score with its interval, the losses, the best marked."""
    keys, labels = scores["keys"], scores["labels"]
    rows = []
    for r in scores["checkpoints"]:
        marks = [
            m
            for m, hit in (
                ("best", r["name"] == scores["best"]["name"]),
                ("lowest loss", r["name"] == scores.get("lowest_eval_loss")),
            )
            if hit
        ]
        rows.append(
            [
                "base" if r["step"] == 0 else str(r["step"]),
                *(
                    f"{r['scores'][k]['mean']:.2f} [{r['scores'][k]['low']:.2f}, {r['scores'][k]['high']:.2f}]"
                    for k in keys
                ),
                _fmt(r["eval_loss"]),
                _fmt(r["train_loss"]),
                ", ".join(marks),
            ]
        )
    head = ["step", *(f"{labels[k]} (95% CI)" for k in keys), "eval loss", "train loss", ""]
    return Table(head, rows)


def checkpoint_plot(scores: dict) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = scores["checkpoints"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    steps = [r["step"] for r in rows]
    for key in scores["keys"]:
        mean = [r["scores"][key]["mean"] for r in rows]
        low = [r["scores"][key]["low"] for r in rows]
        high = [r["scores"][key]["high"] for r in rows]
        ax.plot(steps, mean, marker="o", label=scores["labels"][key])
        ax.fill_between(steps, low, high, alpha=0.2)
    ax.axvline(scores["best"]["step"], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("step (0 = base)")
    ax.set_ylabel("score (mean over references)")
    losses = [(r["step"], r["eval_loss"]) for r in rows if r["eval_loss"] is not None]
    if losses:
        twin = ax.twinx()
        twin.plot(*zip(*losses, strict=True), color="black", marker="x", linestyle=":", label="eval loss")
        twin.set_ylabel("eval loss")
        twin.legend(loc="lower right")
    ax.legend(loc="lower left")
    return png_of(fig)


def checkpoint_report(scores: dict) -> Report:
    best = next(r for r in scores["checkpoints"] if r["name"] == scores["best"]["name"])
    key = scores["keys"][0]
    timing = scores.get("timing", {})
    lines = [
        Text(
            f"Best checkpoint: step {best['step']}, {scores['labels'][key]} {best['scores'][key]['mean']:.2f} "
            f"(mean over references) on {scores['n']} items of {scores['data']}.",
            bold=True,
        ),
        Text(
            f"Chosen by {scores['chosen_by']}. Evaluate it on the test split with "
            f"`make eval RECIPE={scores['recipe']} CHECKPOINT=best`. Scored with {scores['scoring']}."
        ),
    ]
    close = [
        r["name"]
        for r in scores["checkpoints"]
        if r["step"] > 0
        and r["name"] != best["name"]
        and r["scores"][key]["high"] >= best["scores"][key]["mean"]
    ]
    if close:
        lines.append(
            Text(
                f"Within noise of the best ({scores['labels'][key]} interval reaches its mean): {', '.join(close)}. "
                "More validation items narrow the intervals."
            )
        )
    if scores.get("lowest_eval_loss") and scores["lowest_eval_loss"] != best["name"]:
        lines.append(
            Text(f"The lowest evaluation loss is at {scores['lowest_eval_loss']}: loss and ROUGE disagree.")
        )
    gen = scores["generation"]
    settings = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in {**gen, **timing}.items()]
    return Report(
        f"Checkpoints by ROUGE: {scores['recipe']}",
        [
            Section("", lines),
            Section("Checkpoints", [checkpoint_table(scores), Image("checkpoints", checkpoint_plot(scores))]),
            Section("Generation", [Table(["setting", "value"], settings)]),
        ],
    )
