"""Publishing to the Hub, against a local stand-in for the Hub's API: what goes up (weights,
configs, card, scores; never checkpoints, logs or the dataset's texts), in one commit, with
the token from the environment only and never printed."""

import shutil
from pathlib import Path

import pytest
import yaml

from eval import hub

TOKEN = "hf_standin_secret_0123456789"


class StandInHub:
    """Records repositories and commits; a commit's files are copied under ``root/<repo>``."""

    def __init__(self, root: Path):
        self.root, self.repos, self.commits = root, {}, []

    def create_repo(self, repo_id, token, private, exist_ok, repo_type):
        assert token == TOKEN and exist_ok and repo_type == "model"
        self.repos[repo_id] = {"private": private}

    def create_commit(self, repo_id, operations, commit_message, token, repo_type):
        assert token == TOKEN and repo_id in self.repos
        for op in operations:
            target = self.root / repo_id / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(op.path_or_fileobj, target)
        self.commits.append(commit_message)
        return f"https://stand-in/{repo_id}/commit/{len(self.commits)}"


def finished_run(root: Path) -> Path:
    run = root / "run"
    for name in (
        "adapter/adapter_model.safetensors",
        "adapter/adapter_config.json",
        "adapter/tokenizer.json",
        "adapter/README.md",
        "adapter/checkpoint-2/adapter_model.safetensors",
        "adapter/checkpoint-2/optimizer.pt",
        "adapter/runs/events.out.tfevents.1",
        "adapter/training_args.bin",
        "eval/metrics.json",
        "eval/report.md",
        "eval/predictions.jsonl",
    ):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(name)
    (run / "run.yml").write_text(yaml.safe_dump({"recipe": "tiny", "adapter": "lora"}))
    (run / "TRAINED").write_text("finished\n")
    return run


def uploaded(root: Path, repo: str) -> set[str]:
    return {str(p.relative_to(root / repo)) for p in (root / repo).rglob("*") if p.is_file()}


def test_the_adapter_card_and_scores_go_up_in_one_commit(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    stand_in = StandInHub(tmp_path / "hub")
    url = hub.push(finished_run(tmp_path), "me/tiny-lora", api=stand_in)
    assert url == "https://stand-in/me/tiny-lora/commit/1" and stand_in.repos == {
        "me/tiny-lora": {"private": True}
    }
    assert uploaded(tmp_path / "hub", "me/tiny-lora") == {
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "eval/metrics.json",
    }
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err + caplog.text


def test_publishing_refuses_without_a_token_a_card_or_a_merged_model(tmp_path, monkeypatch):
    run = finished_run(tmp_path)
    stand_in = StandInHub(tmp_path / "hub")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(hub.PublishError, match="set HF_TOKEN in the environment"):
        hub.push(run, "me/x", api=stand_in)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(hub.PublishError, match="run `make merge RECIPE=tiny` first"):
        hub.push(run, "me/x", merged=True, api=stand_in)
    (run / "adapter" / "README.md").unlink()
    with pytest.raises(hub.PublishError, match="no model card"):
        hub.push(run, "me/x", api=stand_in)
    assert stand_in.commits == []
