"""The whole pipeline against a real S3 API on loopback, a local Ray of 2 CPUs and Prefect.

Integration tests (``pytest -m integration``; CI runs them): two classes pretrain their backbones
as a stage and train in parallel, to the same models as pretraining inside each class's Train
job; embeddings are published and pulled, a second publish makes a new version while the first
stays readable, a resumed run reuses its backbones; a 3-trial search finishes under ASHA; and
`lrprop pretrain` publishes backbones that `lrprop run` trains from.
"""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest
import torch
from safetensors.torch import load
from tiny import TINY_MODEL, with_sections

from lrprop import store
from lrprop.alignment.models import load_published_model
from lrprop.cli import main
from lrprop.config import config_from_dict, config_to_dict
from lrprop.pipeline.distributed import live_placement_groups, train_classes
from lrprop.registry.aliases import read_alias
from lrprop.registry.backbones import list_backbones, read_backbone
from lrprop.registry.embeddings import list_embeddings, pull_embeddings
from lrprop.registry.run_published import read_published
from lrprop.training.checkpoint import COMPLETE_FILE
from lrprop.training.train import _flatten  # nested metrics as flat keys, for pytest.approx

pytestmark = pytest.mark.integration

TINY_PIPELINE = {
    "data": {"frames_per_view": 8, "image_size": 32},
    "model": TINY_MODEL,
    "loss": {"alpha": 0.01, "beta": 0.4},
    "optim": {"epochs": 2, "lr": 1e-3},
    "pretrain": {"steps": 2, "videos_per_step": 2, "frames_per_video": 4},
    "train": {"log_every": 0, "keep_checkpoints": 1},  # 2 epochs write 2: one must go
    "synthetic": {"num_actions": 2, "train_videos": 4, "val_videos": 3, "length_range": [20, 36], "frame_size": 32},
    "eval": {"fractions": [0.5, 1.0], "ap_ks": [1, 5]},
    "ray": {"validate_every": 1, "tune_samples": 3, "tune_max_concurrent": 2, "tune_grace_epochs": 1},
}


def _no_placement_group_left(timeout_s: float = 15.0) -> bool:
    """No placement group is left holding resources (removal is asynchronous: wait a little)."""
    deadline = time.monotonic() + timeout_s
    while live_placement_groups() and time.monotonic() < deadline:
        time.sleep(0.5)
    return live_placement_groups() == {}


def _config(**changes):
    merged = with_sections(TINY_PIPELINE, **changes)
    return config_to_dict(config_from_dict(merged))


def test_retrain_and_evaluate_on_s3_trains_classes_in_parallel_and_publishes(s3_bucket, local_ray, prefect_harness, monkeypatch):
    from lrprop.pipeline.flows import evaluate_and_publish, retrain_and_evaluate

    root = f"{s3_bucket}/lrprop"
    result = retrain_and_evaluate(_config(), root, "t1")
    assert _no_placement_group_left()  # every class's pretraining actor and Ray Train job gave its CPU back
    runs = result["checkpoints"]
    assert sorted(runs) == ["reach", "swing"]
    # The backbones were pretrained as a stage, published under one version id, and trained from.
    backbones = result["backbones"]
    assert sorted(backbones) == ["reach", "swing"] and result["timings"]["pretrain_s"] > 0
    assert len({uri.rsplit("/", 2)[-2] for uri in backbones.values()}) == 1
    for action, uri in backbones.items():
        assert uri == store.join(root, "backbones", "synthetic", action, uri.rsplit("/", 2)[-2], "backbone.safetensors")
        state = json.loads(store.read_bytes(store.join(runs[action]["checkpoint"], "state.json")))
        assert state["config"]["model"]["pretrained"] == uri and state["config"]["model"]["train_from"] == "none"
    # The oracle: the same config trained with the pretraining inside each class's Train job.
    in_worker = train_classes(
        config_from_dict(_config()),
        root,
        dataset="synthetic",
        version=result["dataset_version"],
        actions=["reach", "swing"],
        run_name="t1-in-worker",
    )
    for action, run in in_worker.items():
        staged = load(store.read_bytes(store.join(runs[action]["checkpoint"], "model.safetensors")))
        oracle = load(store.read_bytes(store.join(run.checkpoint_uri, "model.safetensors")))
        assert staged.keys() == oracle.keys()
        for key, value in oracle.items():
            torch.testing.assert_close(staged[key], value, atol=0, rtol=0, msg=f"{action} {key}")
    # The two Ray Train jobs ran at the same time: each started before the other finished.
    assert max(r["started"] for r in runs.values()) < min(r["finished"] for r in runs.values())
    for info in runs.values():
        assert info["checkpoint"].startswith("s3://") and store.exists(store.join(info["checkpoint"], "model.safetensors"))
        fs, class_dir = store.filesystem(info["checkpoint"].rsplit("/", 1)[0])
        kept = [e["name"] for e in fs.ls(class_dir, detail=True) if e["type"] == "directory"]
        assert kept == [info["checkpoint"].removeprefix("s3://")], kept  # train.keep_checkpoints: 1
    summary = json.loads(store.read_bytes(result["metrics"]))
    assert sorted(summary["per_class"]) == ["reach", "swing"] and "dtw_accuracy" in summary["mean"]
    for ref in ("baseline", "oracle", "gain"):  # the references beside the model, per class and in the mean
        assert "dtw_accuracy" in summary["mean"][ref] and all(ref in m for m in summary["per_class"].values())
    assert b"<img" in store.read_bytes(result["report"])

    # Published: one version per class, pulled back with checksums verified.
    first = result["published"]
    table, manifest = pull_embeddings(root, "synthetic", "reach")
    assert manifest["version"] == first["reach"] and table.num_rows == manifest["rows"] > 0
    assert manifest["dataset_version"] == result["dataset_version"]
    assert manifest["metrics"]["baseline"] == summary["per_class"]["reach"]["baseline"]
    assert manifest["metrics"]["dtw_accuracy"] == summary["per_class"]["reach"]["dtw_accuracy"]
    # Each class's production alias moved to its version exactly when it beat the time-stretch baseline.
    for action, move in result["promotions"].items():
        gain = summary["per_class"][action]["dtw_accuracy"] - summary["per_class"][action]["baseline"]["dtw_accuracy"]
        assert move["moved"] == (gain > 0) and move["to"] == first[action], (action, move, gain)
        held = read_alias(root, "synthetic", action, "production")
        assert (held["version"] if held else None) == (first[action] if gain > 0 else None)

    # Publishing is idempotent per (run, class): the same run's checkpoints again publish nothing new.
    assert read_published(root, "t1") == {
        a: {
            "dataset": "synthetic",
            "version": v,
            "uri": f"{root}/embeddings/synthetic/{a}/{v}",
            "checkpoint": runs[a]["checkpoint"],
        }
        for a, v in first.items()
    }
    again = evaluate_and_publish(root, "synthetic", result["dataset_version"], runs, "t1")
    assert again["published"] == first
    assert {(e["action"], e["n_versions"]) for e in list_embeddings(root)} == {("reach", 1), ("swing", 1)}
    assert json.loads(store.read_bytes(again["metrics"]))["models"] == {
        a: f"{root}/embeddings/synthetic/{a}/{v}" for a, v in first.items()
    }

    # Under another run name the same models are a new version, the first stays readable; a
    # storage error publishing the second class retries the task, which does not publish the
    # first class again (issue 15).
    import lrprop.registry.embeddings

    real_publish, calls = lrprop.registry.embeddings.publish_embeddings, []

    def publish_failing_once(*args, **kwargs):
        calls.append(kwargs["action"])
        if calls == ["reach", "swing"]:
            raise ConnectionError("injected: the store stopped answering")
        return real_publish(*args, **kwargs)

    monkeypatch.setattr(lrprop.registry.embeddings, "publish_embeddings", publish_failing_once)
    republished = evaluate_and_publish(root, "synthetic", result["dataset_version"], runs, "t1-again")
    monkeypatch.undo()
    assert calls == ["reach", "swing", "swing"]  # retried once, reach not published again
    assert all(republished["published"][a] > first[a] for a in first)
    assert pull_embeddings(root, "synthetic", "reach", first["reach"])[0].num_rows == table.num_rows
    listed = {(e["action"], e["n_versions"]) for e in list_embeddings(root)}
    assert listed == {("reach", 2), ("swing", 2)}

    # The same run name resumes: the run's backbones are reused (pretraining anew would name
    # other weights, which its checkpoints refuse), and the finished classes train no further.
    # A fresh retrain would reach the same step and weights (training is deterministic), so each
    # class's last checkpoint gets a mark in its history that only a run reading it carries on.
    for action, info in runs.items():
        state_uri = store.join(info["checkpoint"], "state.json")
        state = json.loads(store.read_bytes(state_uri))
        state["extra"]["history"][0]["resume_mark"] = f"read back {action}"
        marked = json.dumps(state).encode()
        store.write_bytes(state_uri, marked)
        # The checkpoint's list of its files follows, or the resume would refuse it as damaged.
        listed_uri = store.join(info["checkpoint"], COMPLETE_FILE)
        listed = json.loads(store.read_bytes(listed_uri))
        listed["files"]["state.json"] = {"bytes": len(marked), "sha256": hashlib.sha256(marked).hexdigest()}
        store.write_bytes(listed_uri, json.dumps(listed).encode())
    resumed = retrain_and_evaluate(_config(), root, "t1", force=True)  # force: data, config and code are unchanged
    assert resumed["backbones"] == backbones
    assert {(b["action"], b["n_versions"]) for b in list_backbones(root)} == {("reach", 1), ("swing", 1)}
    assert sorted(resumed["checkpoints"]) == ["reach", "swing"]
    for action, info in resumed["checkpoints"].items():
        state = json.loads(store.read_bytes(store.join(info["checkpoint"], "state.json")))
        assert state["step"] == 4  # 4 videos / 2 per step × 2 epochs, unchanged
        assert state["extra"]["history"][0].get("resume_mark") == f"read back {action}", action
    assert resumed["published"] == first  # the same checkpoints: what run t1 published stands
    assert {(e["action"], e["n_versions"]) for e in list_embeddings(root)} == {("reach", 2), ("swing", 2)}


def test_tune_runs_three_trials_with_asha_and_records_the_best_which_a_run_takes_as_its_config(
    s3_bucket, local_ray, prefect_harness
):
    from lrprop.pipeline.flows import tune_flow

    root = f"{s3_bucket}/lrprop"
    best = tune_flow(_config(optim={"epochs": 3}), root, "reach", "tune1")
    assert best["trials"] == 3 and best["metric"] == "val_dtw_accuracy"
    assert _no_placement_group_left()  # no trial's placement group outlived the search
    assert 0.0 <= best["value"] <= 1.0
    assert (
        best["params"]["frames_per_view"] in (20,)
        and 1e-4 <= best["params"]["alpha"] <= 1e-1
        and 0.1 <= best["params"]["beta"] <= 3.2
    )
    record = json.loads(store.read_bytes(store.join(root, "tune", "tune1", "reach", "best.json")))
    assert record["params"] == best["params"]
    promoted = store.read_bytes(best["config_uri"]).decode()
    assert promoted.startswith("# lrprop run --config")
    import yaml

    promoted_config = config_from_dict(yaml.safe_load(promoted))
    assert promoted_config.loss.alpha == pytest.approx(best["params"]["alpha"])
    # The backbone was pretrained once for all trials, published, and the promoted config names it.
    (entry,) = list_backbones(root)
    shared = store.join(root, "backbones", "synthetic", "reach", entry["latest_version"], "backbone.safetensors")
    assert promoted_config.model.pretrained == shared and promoted_config.model.train_from == "none"
    assert read_backbone(root, "synthetic", "reach")[1]["version"] == entry["latest_version"]  # checksum verified

    # Promoted as the cluster guide says: a run takes best.yaml from the store as its config (issue 15)
    assert main(["run", "--config", best["config_uri"], "--store", root, "--run-name", "promoted"]) == 0
    assert _no_placement_group_left()
    for action in ("reach", "swing"):
        trained = config_from_dict(pull_embeddings(root, "synthetic", action)[1]["model"]["config"])
        assert trained.loss.alpha == pytest.approx(best["params"]["alpha"]) and trained.loss.beta == pytest.approx(
            best["params"]["beta"]
        )
        assert trained.data.frames_per_view == best["params"]["frames_per_view"] and trained.model.pretrained == shared
    assert [b["n_versions"] for b in list_backbones(root)] == [1]  # trained from the search's backbone, none pretrained


def test_cli_run_on_a_local_store_prints_metrics_and_lists_embeddings(tmp_path, local_ray, prefect_harness, capsys, monkeypatch):
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text("# lrprop run --config tiny.yaml\n" + yaml.safe_dump(TINY_PIPELINE))
    store_dir = tmp_path / "store"
    monkeypatch.chdir(tmp_path)  # a relative --store, as in the README: Ray workers run elsewhere
    # The lines the progress display writes to the flow run's log (Prefect's console handler
    # writes to the stream it found when Prefect set up logging, which capsys misses later in a session)
    import lrprop.pipeline.progress

    lines, real_line = [], lrprop.pipeline.progress.progress_line
    monkeypatch.setattr(lrprop.pipeline.progress, "progress_line", lambda *a: lines.append(real_line(*a)) or lines[-1])
    assert main(["run", "--config", str(config), "--store", "store", "--run-name", "cli1"]) == 0
    monkeypatch.setattr(lrprop.pipeline.progress, "progress_line", real_line)
    assert _no_placement_group_left()  # `lrprop run` returns with nothing reserved
    out = capsys.readouterr().out
    # Each class's progress reached the display, from what its Train worker reported.
    for action in ("reach", "swing"):
        assert any(re.fullmatch(rf"{action}: epoch 2/2, step 4, loss \d\S*, \d+ s elapsed, done", m) for m in lines), lines
        assert any(re.fullmatch(rf"{action}: pretraining step 2/2, loss \d\S*, \d+ s elapsed, done", m) for m in lines), lines
    assert "dtw_accuracy" in out and "published embeddings synthetic/reach" in out
    assert "time-stretch baseline" in out and re.search(r"^\s+baseline(\s+-?\d+\.\d\d){3}$", out, re.M)
    assert (store_dir / "runs" / "cli1" / "evaluation" / "report.html").is_file()
    # `lrprop evaluate --run` scores what the run published, to the run's own numbers (issue 15)
    ran = json.loads((store_dir / "runs" / "cli1" / "evaluation" / "metrics.json").read_text())
    assert main(["evaluate", "--run", "cli1", "--store", "store"]) == 0
    capsys.readouterr()
    again = json.loads((tmp_path / "lrprop-evaluation" / "cli1" / "metrics.json").read_text())
    assert _flatten(again["per_class"]) == pytest.approx(_flatten(ran["per_class"]), abs=1e-6)
    assert again["models"] == ran["models"] == {a: r["uri"] for a, r in read_published("store", "cli1").items()}
    report = (store_dir / "runs" / "cli1" / "evaluation" / "report.html").read_text()
    assert all(uri in report for uri in ran["models"].values()) and "lrprop-eval-" not in report
    assert main(["embeddings", "list", "--store", str(store_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    assert sorted(line.split()[1] for line in lines) == ["reach", "swing"]
    assert main(["run", "--run-name", "../escape", "--store", str(store_dir)]) == 2
    # Two of the run's validation videos (their frame folders, as generated) aligned with the model it published
    (raw,) = (store_dir / "raw").iterdir()
    a, b = sorted(p for p in (raw / "val" / "reach").iterdir() if p.is_dir())[:2]
    aligned = ["align", str(a), str(b), "--model", "synthetic/reach", "--store", "store", "--out", "aligned", "--video", "gif"]
    assert main(aligned) == 0
    out = capsys.readouterr().out
    published = read_published("store", "cli1")["reach"]["version"]
    assert re.search(rf"^model: \S*embeddings/synthetic/reach/{published}$", out, re.M) and "normalised cost" in out
    assert sorted(p.name for p in (tmp_path / "aligned").iterdir()) == ["aligned.gif", "alignment.csv", "alignment.png"]
    # Their phases, by the vote of the class's training videos (the model's own data set)
    assert main(["phases", str(a), str(b), "--model", "synthetic/reach", "--store", "store", "--out", "phased"]) == 0
    out = capsys.readouterr().out
    assert "references: 4 labelled videos" in out and f"{a.name}: " in out and f"{b.name}: " in out
    doc = json.loads((tmp_path / "phased" / "phases.json").read_text())
    assert [v["frames"] for v in doc["videos"]] == [len(list(a.glob("*.jpg"))), len(list(b.glob("*.jpg")))]
    assert (tmp_path / "phased" / "timeline.png").is_file() and (tmp_path / "phased" / "phases.csv").is_file()
    # The class's validation videos ranked by their alignment cost to the others
    assert main(["outliers", "--dataset", "synthetic", "--action", "reach", "--store", "store", "--out", "ranked"]) == 0
    assert "reach/val: 3 videos, the most unusual first" in capsys.readouterr().out
    assert len((tmp_path / "ranked" / "outliers.csv").read_text().splitlines()) == 1 + 3
    assert sorted(p.name for p in (tmp_path / "ranked").iterdir()) == ["outliers.csv", "outliers.html", "outliers.png"]

    # Run again on unchanged data, config and code: nothing trains, nothing new is published,
    # and the run names the versions that stand (issue 15).
    versions = {e["action"]: e["latest_version"] for e in list_embeddings("store")}
    assert main(["run", "--config", str(config), "--store", "store", "--run-name", "cli2"]) == 0
    out = capsys.readouterr().out
    for action, version in versions.items():
        assert f"not retrained synthetic/{action}: data, config and code unchanged since {version}" in out
    assert "published embeddings" not in out and not (store_dir / "runs" / "cli2" / "ray").exists()
    assert {e["action"]: e["n_versions"] for e in list_embeddings("store")} == {"reach": 1, "swing": 1}
    assert {a: (r["version"], r.get("unchanged")) for a, r in read_published("store", "cli2").items()} == {
        a: (v, True) for a, v in versions.items()
    }
    # A change to one class's config retrains that class only.
    changed = ["--set", "actions.reach.loss.alpha=0.02"]
    assert main(["run", "--config", str(config), "--store", "store", "--run-name", "cli3", *changed]) == 0
    out = capsys.readouterr().out
    assert "published embeddings synthetic/reach" in out and "not retrained synthetic/swing" in out
    assert {e["action"]: e["n_versions"] for e in list_embeddings("store")} == {"reach": 2, "swing": 1}


def test_cli_pretrain_publishes_backbones_that_run_then_trains_from(tmp_path, local_ray, prefect_harness, capsys, monkeypatch):
    import shlex

    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text("# lrprop pretrain --config tiny.yaml\n" + yaml.safe_dump(TINY_PIPELINE))
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--config", str(config), "--store", "store", "--action", "reach", "swing"]) == 0
    assert _no_placement_group_left()
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()}
    uris = {a: lines[a].split()[-1] for a in ("reach", "swing")}
    for action, uri in uris.items():
        assert uri.startswith(str(tmp_path / "store" / "backbones" / "synthetic" / action))
        assert read_backbone("store", "synthetic", action)[1]["steps"] == TINY_PIPELINE["pretrain"]["steps"]
    hint = shlex.split(out.split("to train from them:\n", 1)[1].strip())
    assert hint[:2] == ["lrprop", "run"] and "model.train_from=none" in hint
    assert any(v.startswith("model.pretrained=") and "/{action}/" in v for v in hint)
    assert main(["backbones", "list", "--store", "store"]) == 0
    listed = [line.split() for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert sorted((row[1], row[3]) for row in listed) == [("reach", "1"), ("swing", "1")]

    # The printed command trains from them: no pretraining of its own, the backbone as published.
    assert main(hint[1:] + ["--run-name", "from-backbones"]) == 0
    assert _no_placement_group_left()
    capsys.readouterr()
    assert [b["n_versions"] for b in list_backbones("store")] == [1, 1]  # the run published none
    for action, uri in uris.items():
        _, manifest = pull_embeddings("store", "synthetic", action)
        assert manifest["model"]["config"]["model"]["pretrained"] == uri
        model = load_published_model("store", "synthetic", action)
        weights = load(read_backbone("store", "synthetic", action)[0])
        for key, value in model.backbone.state_dict().items():
            torch.testing.assert_close(value, weights[key], atol=0, rtol=0, msg=f"{action} {key}")
    # A class the data set lacks is an error naming it.
    assert main(["pretrain", "--config", str(config), "--store", "store", "--action", "jump"]) == 2
    assert "['jump']" in capsys.readouterr().err
