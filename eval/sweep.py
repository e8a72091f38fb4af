"""A hyper-parameter sweep chosen by ROUGE: one normal run per grid point, every checkpoint
of every run scored on the validation split, one report.

``SWEEP="learning_rate=1e-4,3e-4 lora_r=8,16"`` is the grid (every combination; keys joined
by ``+`` move together: ``lora_r+lora_alpha=16+32,64+128``). Each point
is trained by the training entry point into ``<sweep>/<point>/`` (a normal run directory),
then scored by :mod:`eval.checkpoints`. Training and evaluation live in two environments, so
both run as child processes with their own interpreters. A killed sweep, run again, skips
the finished points and resumes the rest (training from its last checkpoint, scoring from
its saved generations). Writes ``<sweep>/sweep.json``, ``sweep.md`` and ``sweep.html``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from datasets_fmt import atomic
from eval.checkpoint_paths import OUT_NAME
from eval.pipeline import gpu_count
from eval.render import Image, Report, Section, Table, Text, png_of, to_html, to_markdown
from eval.report import loss_history
from training.paths import FINISHED, REPO, RUNS

log = logging.getLogger("sweep")
# the training entry point, run in the training environment: it also hands the training checks
# this side's evaluation: block check, which `python -m training.runner` could not do
TRAIN_SCRIPT = REPO / "scripts" / "train.py"


class SweepError(ValueError):
    """A grid that cannot be run: says which part is wrong and how to write it."""


@dataclass(frozen=True)
class Point:
    values: tuple[tuple[str, str], ...]  # (key, value) in the grid's order

    @property
    def name(self) -> str:
        return "_".join(f"{key}-{re.sub(r'[^A-Za-z0-9.+-]', '-', value)}" for key, value in self.values)

    @property
    def overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.values]


def parse_axis(part: str) -> list[tuple[tuple[str, str], ...]]:
    """``lr=1e-4,3e-4`` -> its settings; ``lora_r+lora_alpha=16+32,64+128`` ties keys together
    (a value of each per setting), for settings that only make sense in pairs."""
    names, sep, values = part.partition("=")
    keys = names.split("+")
    options = [v for v in values.split(",") if v]
    if not sep or not all(keys) or not options:
        raise SweepError(f"SWEEP: '{part}' is not key=value[,value...] (e.g. learning_rate=1e-4,3e-4)")
    if len(set(options)) != len(options):
        raise SweepError(f"SWEEP: '{part}' repeats a value")
    settings = []
    for option in options:
        values_of = option.split("+")
        if len(values_of) != len(keys):
            raise SweepError(
                f"SWEEP: '{option}' in '{part}' needs {len(keys)} '+'-joined values, one for each of {', '.join(keys)}"
            )
        settings.append(tuple(zip(keys, values_of, strict=True)))
    return settings


def parse_grid(spec: str) -> list[Point]:
    """``"learning_rate=1e-4,3e-4 lora_r=8,16"`` -> the 4 points of the grid."""
    axes = [parse_axis(part) for part in spec.split()]
    if not axes:
        raise SweepError(
            'SWEEP is empty: give at least one key=value[,value...], e.g. SWEEP="learning_rate=1e-4,3e-4"'
        )
    keys = [key for axis in axes for key, _ in axis[0]]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise SweepError(f"SWEEP: {', '.join(repeated)} is given twice; list all its values once: key=a,b")
    return [Point(tuple(kv for setting in combo for kv in setting)) for combo in itertools.product(*axes)]


@dataclass
class SweepRequest:
    recipe: str
    grid: str
    out_dir: Path | None = None
    overrides: tuple[str, ...] = ()  # applied to every point, before the grid's values
    data_dir: str | None = None
    limit: int | None = None
    backend: str | None = None
    parallel: int = 1  # points trained at once (small models leave a GPU mostly idle)
    gpus: int = 1  # each point trained on this many GPUs, and scored by as many engine replicas
    train_python: str = sys.executable
    eval_python: str = sys.executable


class Sweep:
    def __init__(self, request: SweepRequest):
        self.request = request
        self.points = parse_grid(request.grid)
        clash = {k for p in self.points for k, _ in p.values} & {
            o.partition("=")[0] for o in request.overrides
        }
        if clash:
            raise SweepError(
                f"{', '.join(sorted(clash))} is both swept and overridden: keep it in SWEEP only"
            )
        self.out_dir = (request.out_dir or RUNS / f"{request.recipe}-sweep").resolve()

    def run_dir(self, point: Point) -> Path:
        return self.out_dir / point.name

    def train_command(self, point: Point) -> list[str]:
        data = ["--data-dir", self.request.data_dir] if self.request.data_dir else []
        return [
            self.request.train_python,
            str(TRAIN_SCRIPT),
            self.request.recipe,
            *self.request.overrides,
            *point.overrides,
            "--run-dir",
            str(self.run_dir(point)),
            *data,
            *self.gpus_flag(),
        ]

    def gpus_flag(self) -> list[str]:
        return ["--gpus", str(self.request.gpus)] if self.request.gpus > 1 else []

    def score_command(self, point: Point) -> list[str]:
        # earlier points' base generations, taken from the first whose settings match
        earlier = [str(self.run_dir(p) / OUT_NAME) for p in self.points[: self.points.index(point)]]
        extra = [
            *(["--base-from", *earlier] if earlier else []),
            *(["--data-dir", self.request.data_dir] if self.request.data_dir else []),
            *(["--limit", str(self.request.limit)] if self.request.limit else []),
            *(["--backend", self.request.backend] if self.request.backend else []),
            *self.gpus_flag(),
        ]
        return [
            self.request.eval_python,
            "-m",
            "eval.checkpoints",
            self.request.recipe,
            "--run-dir",
            str(self.run_dir(point)),
            *extra,
        ]

    def step(self, point: Point, what: str, cmd: list[str]) -> None:
        """Run one child process, its output in the point's log; raise with the log's tail."""
        log_file = self.run_dir(point) / f"{what}.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log.info("%s: %s (log: %s)", point.name, what, log_file)
        started = time.time()
        with log_file.open("a") as out:
            code = subprocess.run(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT).returncode
        log.info("%s: %s took %.0f s", point.name, what, time.time() - started)
        if code != 0:
            tail = "".join(log_file.read_text(errors="replace").splitlines(keepends=True)[-15:])
            raise SweepError(
                f"{point.name}: {what} failed (exit {code}); run the sweep again to resume. Log {log_file}:\n{tail}"
            )

    def train(self, point: Point) -> None:
        if not (self.run_dir(point) / FINISHED).exists():
            self.step(point, "train", self.train_command(point))

    def train_all(self) -> None:
        """Train the points, ``parallel`` at a time; after a failure start no further one."""
        with ThreadPoolExecutor(max_workers=max(1, self.request.parallel)) as pool:
            futures = [pool.submit(self.train, p) for p in self.points]
            for future in as_completed(futures):
                if future.exception():
                    for other in futures:
                        other.cancel()
                    raise future.exception()

    def run(self) -> dict:
        self.train_all()
        for point in self.points:
            self.step(point, "score", self.score_command(point))
        return self.write_report()

    # -- report ----------------------------------------------------------------------------
    def results(self) -> list[dict]:
        rows = []
        for point in self.points:
            scores = json.loads((self.run_dir(point) / OUT_NAME / "scores.json").read_text())
            best = next(c for c in scores["checkpoints"] if c["name"] == scores["best"]["name"])
            rows.append({"point": point.name, "values": dict(point.values), "scores": scores, "best": best})
        return rows

    def write_report(self) -> dict:
        rows = self.results()
        key = rows[0]["scores"]["keys"][0]
        winner = max(rows, key=lambda r: r["best"]["scores"][key]["mean"])
        summary = {
            "recipe": self.request.recipe,
            "grid": self.request.grid,
            "overrides": list(self.request.overrides),
            "chosen_by": rows[0]["scores"]["chosen_by"],
            "split": rows[0]["scores"]["split"],
            "n": rows[0]["scores"]["n"],
            "best": {
                "point": winner["point"],
                "run_dir": str(self.run_dir(Point(tuple(winner["values"].items())))),
                "checkpoint": winner["best"]["name"],
                "path": winner["best"]["path"],
            },
            "points": [
                {
                    "point": r["point"],
                    "values": r["values"],
                    "best_checkpoint": r["best"]["name"],
                    "best_scores": {k: r["best"]["scores"][k] for k in r["scores"]["keys"]},
                    "eval_loss_at_best": r["best"]["eval_loss"],
                    "checkpoints": [
                        {"step": c["step"], key: c["scores"][key]["mean"], "eval_loss": c["eval_loss"]}
                        for c in r["scores"]["checkpoints"]
                    ],
                }
                for r in rows
            ],
        }
        atomic.write_json(self.out_dir / "sweep.json", summary)
        report = sweep_report(summary, rows, self.loss_curves())
        for image in report.images():
            atomic.write_bytes(self.out_dir / f"{image.name}.png", image.png)
        atomic.write_text(self.out_dir / "sweep.md", to_markdown(report))
        atomic.write_text(self.out_dir / "sweep.html", to_html(report))
        print(f"sweep report: {self.out_dir / 'sweep.md'} (and sweep.html, sweep.json)")
        print(f"best: {winner['point']} at {winner['best']['name']}")
        return summary

    def loss_curves(self) -> dict[str, list[dict]]:
        return {p.name: loss_history(self.run_dir(p)) for p in self.points}


def paper_table(summary: dict, labels: dict[str, str], keys: list[str]) -> Table:
    """One row per point: the swept values, the chosen checkpoint and its scores."""
    swept = list(summary["points"][0]["values"])
    rows = []
    for p in summary["points"]:
        scores = p["best_scores"]
        mark = " (best)" if p["point"] == summary["best"]["point"] else ""
        rows.append(
            [
                *(p["values"][k] for k in swept),
                p["best_checkpoint"].removeprefix("checkpoint-") + mark,
                *(
                    f"{scores[k]['mean']:.2f} ± {(scores[k]['high'] - scores[k]['low']) / 2:.2f}"
                    for k in keys
                ),
                "" if p["eval_loss_at_best"] is None else f"{p['eval_loss_at_best']:.4f}",
            ]
        )
    return Table([*swept, "step", *(labels[k] for k in keys), "eval loss"], rows)


def sweep_plots(rows: list[dict], curves: dict[str, list[dict]], key: str) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for r in rows:
        points = [(c["step"], c["scores"][key]["mean"]) for c in r["scores"]["checkpoints"]]
        ax.plot(*zip(*points, strict=True), marker="o", label=r["point"])
    ax.set_xlabel("step (0 = base)")
    ax.set_ylabel(f"{rows[0]['scores']['labels'][key]} (validation)")
    ax.legend(fontsize=7)
    out["sweep_rouge"] = png_of(fig)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, history in curves.items():
        train = [(h["step"], h["loss"]) for h in history if "loss" in h]
        val = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
        if train:
            line = ax.plot(*zip(*train, strict=True), label=f"{name} train")[0]
            if val:
                ax.plot(
                    *zip(*val, strict=True),
                    marker="o",
                    linestyle="--",
                    color=line.get_color(),
                    label=f"{name} eval",
                )
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if ax.lines:
        ax.legend(fontsize=7)
        out["sweep_loss"] = png_of(fig)
    else:
        plt.close(fig)
    return out


def sweep_report(summary: dict, rows: list[dict], curves: dict[str, list[dict]]) -> Report:
    scores = rows[0]["scores"]
    keys, labels = scores["keys"], scores["labels"]
    images = sweep_plots(rows, curves, keys[0])
    best = summary["best"]
    return Report(
        f"Sweep: {summary['recipe']}",
        [
            Section(
                "",
                [
                    Text(f"Best: {best['point']} at {best['checkpoint']} ({best['path']}).", bold=True),
                    Text(
                        f"Grid {summary['grid']!r}"
                        + (f" with {' '.join(summary['overrides'])}" if summary["overrides"] else "")
                        + f"; every checkpoint scored on {summary['n']} items of the {summary['split']} split, "
                        f"chosen by {summary['chosen_by']}. Scores are mean over references ± half the 95% "
                        f"bootstrap interval. Test it: make eval RECIPE={summary['recipe']} "
                        f"RUN_DIR={best['run_dir']} CHECKPOINT=best"
                    ),
                ],
            ),
            Section("Results", [paper_table(summary, labels, keys)]),
            Section(
                "Per checkpoint",
                [Image(name, png) for name, png in images.items()],
            ),
        ],
    )


def parse_args(argv: list[str] | None) -> SweepRequest:
    parser = argparse.ArgumentParser(description="Train a grid of runs and choose by validation ROUGE.")
    parser.add_argument("recipe")
    parser.add_argument("grid", help='e.g. "learning_rate=1e-4,3e-4 lora_r=8,16"')
    parser.add_argument("overrides", nargs="*", help="key=value applied to every point")
    parser.add_argument("--out-dir", type=Path, help="default: runs/<recipe>-sweep")
    parser.add_argument("--data-dir")
    parser.add_argument("--limit", type=int, help="score the first N validation items")
    parser.add_argument("--backend", help="vllm | hf")
    parser.add_argument(
        "--parallel", type=int, default=1, help="points trained at once (one GPU, small models)"
    )
    parser.add_argument(
        "--gpus",
        type=gpu_count,
        default=1,
        help="GPUs each point trains on; as many engine replicas score it",
    )
    parser.add_argument("--train-python", default=sys.executable, help="interpreter of the training env")
    parser.add_argument("--eval-python", default=sys.executable, help="interpreter of the evaluation env")
    args = vars(parser.parse_args(argv))
    args["overrides"] = tuple(args["overrides"])
    return SweepRequest(**args)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        Sweep(parse_args(argv)).run()
    except SweepError as err:
        log.error("%s", err)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
