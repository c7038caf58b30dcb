"""The store's registry of pretrained backbones (lrprop/registry/backbones.py) and the pretraining stage's
per-class function, without Ray: round trips, checksums, versions invisible until complete, and
the stage's models against the oracle of a run that pretrains in its own training (train())."""

from __future__ import annotations

import shutil

import pytest
import torch
from tiny import tiny

from lrprop import store
from lrprop.config import ConfigError, config_from_dict, config_to_dict
from lrprop.core.model import SmallCNNBackbone, backbone_weights_bytes
from lrprop.data.parquet import ParquetVideos
from lrprop.ingest.synthetic import ensure_synthetic_dataset
from lrprop.pipeline.distributed import pretrain_and_publish
from lrprop.registry.backbones import (
    WEIGHTS_FILE,
    backbones_collection,
    list_backbones,
    publish_backbone,
    published_as,
    read_backbone,
    read_weights,
    weights_template,
    weights_uri,
    with_pretrained_backbones,
)
from lrprop.store import ChecksumError
from lrprop.training.train import build_model, train

SMALL_SET = {"num_actions": 2, "train_videos": 4, "val_videos": 2, "length_range": [20, 36], "frame_size": 32}


def _config(**sections):
    return config_from_dict(tiny(synthetic=SMALL_SET, optim={"epochs": 1}, **sections))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A store holding the tiny synthetic data set (2 classes, 4 training videos each)."""
    root = str(tmp_path_factory.mktemp("store"))
    return root, ensure_synthetic_dataset(_config(), root)


def _publish(root, weights: bytes, action="reach", **changes):
    return publish_backbone(
        root,
        dataset="synthetic",
        action=action,
        weights=weights,
        config=_config(),
        dataset_manifest={"version": "v-of-the-data", "content_hash": "abc"},
        losses=[2.0, 1.5],
        frames_per_s=100.0,
        wall_s=3.0,
        device="cpu",
        **changes,
    )


def _weights(seed: int = 0) -> bytes:
    torch.manual_seed(seed)
    return backbone_weights_bytes(SmallCNNBackbone(width=8))


def test_publish_then_read_gives_the_weights_back_and_a_damaged_file_fails_naming_its_uri(tmp_path):
    root = str(tmp_path)
    weights = _weights()
    manifest = _publish(root, weights)
    data, read = read_backbone(root, "synthetic", "reach")
    assert data == weights and read == manifest
    uri = weights_uri(root, "synthetic", "reach", manifest["version"])
    assert read_weights(uri) == weights
    assert manifest["settings"] == {
        "pretrain": config_to_dict(_config().pretrain),  # the whole section
        "model": {"backbone": "small_cnn", "cnn_width": 8, "train_from": "layer4", "pooling": "max"},
        "data": {"image_size": 32},
        "train": {"seed": 0},
    }
    assert (manifest["dataset_version"], manifest["steps"], manifest["final_loss"]) == ("v-of-the-data", 2, 1.5)
    assert manifest["files"][0]["path"] == WEIGHTS_FILE and manifest["files"][0]["size"] == len(weights)
    assert list_backbones(root) == [
        {"dataset": "synthetic", "action": "reach", "latest_version": manifest["version"], "n_versions": 1}
    ]

    damaged = bytearray(weights)
    damaged[-1] ^= 0xFF
    store.write_bytes(uri, bytes(damaged))
    for read_them in (lambda: read_backbone(root, "synthetic", "reach"), lambda: read_weights(uri)):
        with pytest.raises(ChecksumError, match=f"^{uri}: size or sha256 differs"):
            read_them()
    # model.pretrained reads through the same check: no model is built from damaged weights.
    with pytest.raises(ChecksumError, match=uri):
        build_model(_config(model={"pretrained": uri}))


def test_a_version_is_invisible_and_refused_until_its_manifest_is_written(tmp_path, monkeypatch):
    root = str(tmp_path)
    monkeypatch.setattr(store, "write_manifest", lambda *a, **k: (_ for _ in ()).throw(OSError("crashed")))
    with pytest.raises(OSError, match="crashed"):
        _publish(root, _weights())
    monkeypatch.undo()
    (folder,) = (tmp_path / "backbones" / "synthetic" / "reach").iterdir()
    assert (folder / WEIGHTS_FILE).is_file()  # the weights came first
    assert list_backbones(root) == [] and store.list_versions(backbones_collection(root, "synthetic", "reach")) == []
    uri = weights_uri(root, "synthetic", "reach", folder.name)
    with pytest.raises(FileNotFoundError, match="is not published"):
        read_weights(uri)
    # A published version is immutable: publishing the same id again is refused.
    manifest = _publish(root, _weights())
    with pytest.raises(FileExistsError):
        _publish(root, _weights(1), version=manifest["version"])


def test_names_and_versions_are_validated_before_they_become_paths(tmp_path):
    with pytest.raises(ValueError, match="action name"):
        _publish(str(tmp_path), _weights(), action="../escape")
    with pytest.raises(ValueError, match="invalid version"):
        _publish(str(tmp_path), _weights(), version="../v1")
    with pytest.raises(ValueError, match="invalid version"):
        read_backbone(str(tmp_path), "synthetic", "reach", "latest/../../x")
    assert not any(tmp_path.iterdir())
    # A file of the user's own, outside the registry, is read as it is.
    own = tmp_path / "mine.safetensors"
    own.write_bytes(_weights())
    assert read_weights(str(own)) == own.read_bytes()


def test_published_weights_load_as_model_pretrained_and_change_the_backbone(dataset, monkeypatch):
    root, version = dataset
    config = _config()
    done = pretrain_and_publish(config, root, dataset="synthetic", version=version, action="reach")
    assert done["steps"] == config.pretrain.steps and done["uri"].endswith(f"/reach/{done['version']}/{WEIGHTS_FILE}")
    frames = torch.rand(6, 3, 32, 32)

    def features(c) -> torch.Tensor:
        torch.manual_seed(c.train.seed)
        return build_model(c).backbone.eval()(frames)

    random_init = features(config)
    loaded = features(_config(model={"pretrained": done["uri"]}))
    published = SmallCNNBackbone(width=8)
    from lrprop.core.model import load_backbone_weights

    load_backbone_weights(published, read_backbone(root, "synthetic", "reach")[0])
    torch.testing.assert_close(loaded, published.eval()(frames), atol=0, rtol=0)
    assert (loaded - random_init).abs().max() > 1e-3  # the pretraining changed what it sees
    # The run's resume recognises weights pretrained under the same settings on the same data.
    assert published_as(done["uri"], config, version)["version"] == done["version"]
    assert published_as(done["uri"], _config(pretrain={"steps": 3}), version) is None
    assert published_as(done["uri"], config, "v-another") is None
    assert published_as(done["uri"], _config(model={"pooling": "max_where"}), version) is None  # other features
    # A version published before pooling and cycle_weight were settings matches a config that
    # keeps their values then, and no other.
    from lrprop import store as store_module
    from lrprop.registry.backbones import backbones_collection

    collection = backbones_collection(root, "synthetic", "reach")
    manifest = store_module.read_manifest(collection, done["version"])
    del manifest["settings"]["model"]["pooling"], manifest["settings"]["pretrain"]["cycle_weight"]
    monkeypatch.setattr(store_module, "read_manifest", lambda *args, **kwargs: manifest)
    assert published_as(done["uri"], config, version)["version"] == done["version"]
    assert published_as(done["uri"], _config(pretrain={"cycle_weight": 1.0}), version) is None


@pytest.mark.parametrize("freeze", [True, False])
def test_the_stage_trains_the_same_models_as_pretraining_in_the_run(dataset, tmp_path, freeze, monkeypatch):
    """The oracle: train() pretraining (and freezing, or fine-tuning) the backbone itself. The
    stage pretrains each class on its own, publishes, and trains from model.pretrained."""
    import lrprop.training.train

    root, version = dataset
    config = _config(pretrain={"freeze_backbone": freeze})
    shared = store.new_version_id()
    uris = {
        action: pretrain_and_publish(config, root, dataset="synthetic", version=version, action=action, publish_as=shared)["uri"]
        for action in ("reach", "swing")
    }
    staged = with_pretrained_backbones(config, uris)
    template = store.join(root, "backbones", "synthetic", "{action}", shared, WEIGHTS_FILE)
    assert weights_template(root, "synthetic", shared) == template
    for action in ("reach", "swing"):
        source = ParquetVideos(root, "synthetic", version=version, action=action, split="train")
        oracle = train(config.for_class(action), source, checkpoint_dir=tmp_path / action / "run").model.state_dict()
        given = staged.for_class(action)
        assert given.model.pretrained == uris[action] and (given.model.train_from == "none") == freeze
        # One {action} template names the classes pretrained together.
        by_template = _config(pretrain={"freeze_backbone": freeze}, model={"pretrained": template}).for_class(action)
        assert by_template.model.pretrained == uris[action]
        with monkeypatch.context() as patched:
            patched.setattr(lrprop.training.train, "pretrain_backbone", lambda *a, **k: pytest.fail("pretrained again"))
            again = train(given, source, checkpoint_dir=tmp_path / action / "stage").model.state_dict()
        for key, value in oracle.items():
            torch.testing.assert_close(again[key], value, atol=0, rtol=0, msg=key)


def test_a_template_is_a_config_error_until_a_class_names_it():
    config = _config(model={"pretrained": "store/backbones/synthetic/{action}/v1/backbone.safetensors"})
    with pytest.raises(ConfigError, match="model.pretrained.*Config.for_class"):
        build_model(config)


def test_the_stage_leaves_a_class_its_run_trained_before_the_stage_to_pretrain_in_train(tmp_path):
    """A run resumed from checkpoints made without the stage keeps pretraining inside train():
    a backbone given now would change its config, and its checkpoints would not resume."""
    from lrprop.pipeline.flows import _pretraining

    root, config = str(tmp_path), config_to_dict(_config())
    assert _pretraining(config, ["reach", "swing"], root, "r1") == ["reach", "swing"]  # a new run
    (tmp_path / "runs" / "r1" / "ray" / "reach").mkdir(parents=True)  # reach trained, before the stage
    assert _pretraining(config, ["reach", "swing"], root, "r1") == ["swing"]
    store.write_json(store.join(root, "runs", "r1", "backbones.json"), {"reach": "uri"})  # trained after it
    assert _pretraining(config, ["reach", "swing"], root, "r1") == ["reach", "swing"]
    assert _pretraining(config_to_dict(_config(pretrain={"steps": 0})), ["reach"], root, "r1") == []


def test_cli_pretrain_of_some_classes_prints_per_class_flags_for_them_only(monkeypatch, capsys, tmp_path):
    """With --action naming some classes, one {action} template would point the others at
    backbones never published: the printed command names each pretrained class instead."""
    import lrprop.pipeline.flows
    from lrprop.cli import main

    version = "v20261202T000000000000Z-00000000"
    uri = f"{tmp_path}/backbones/synthetic/reach/{version}/backbone.safetensors"
    done = {"reach": {"version": version, "steps": 2, "final_loss": 1.0, "wall_s": 1.0, "uri": uri}}
    fake = {
        "store": str(tmp_path),
        "dataset": "synthetic",
        "dataset_version": "v1",
        "actions": ["reach", "swing"],
        "run_name": "p1",
        "backbones": done,
    }
    monkeypatch.setattr(lrprop.pipeline.flows, "pretrain_flow", lambda *a, **k: fake)
    assert main(["pretrain", "--store", str(tmp_path), "--action", "reach"]) == 0
    out = capsys.readouterr().out
    assert f"actions.reach.model.pretrained={uri}" in out and "actions.reach.model.train_from=none" in out
    assert "{action}" not in out and "swing" not in out.split("to train from them:")[1]


@pytest.mark.parametrize("flow_name", ["retrain_and_evaluate", "tune_flow", "pretrain_flow"])
def test_an_empty_run_name_is_refused_not_replaced_by_a_new_one(tmp_path, flow_name):
    """Issue 14: ``--run-name ""`` (an unset variable in a script) silently started a new run."""
    import lrprop.pipeline.flows as flows

    body = getattr(flows, flow_name).fn  # the flow's own function: the check comes before any work
    with pytest.raises(ValueError, match="invalid run name ''"):
        body(config_to_dict(_config()), str(tmp_path), run_name="")
    assert not any(tmp_path.iterdir())  # nothing was written


def test_a_retried_stage_pretrains_only_the_classes_that_failed(dataset, tmp_path, monkeypatch):
    """Issue 14: one class's store outage failed the pretraining task, and its retry pretrained
    every class again (new weights, a new version). Each class is recorded as it is published:
    the retry reuses those and pretrains the failed one only."""
    import lrprop.pipeline.distributed as distributed
    from lrprop.pipeline.flows import pretrain_recorded

    root, version = dataset
    store_uri = str(tmp_path / "store")
    shutil.copytree(root, store_uri)  # the module's data set, in a store of this test's own
    calls = []

    def pretrain_class(config, data, *, publish_as=None, what=""):  # the actor's work, in this process
        calls.append(data.action)
        if data.action == "swing" and calls.count("swing") == 1:
            raise ConnectionError("the store did not answer")
        return pretrain_and_publish(
            config, data.store, dataset=data.dataset, version=data.version, action=data.action, publish_as=publish_as
        )

    monkeypatch.setattr(distributed, "ensure_ray", lambda address: None)
    monkeypatch.setattr(distributed, "pretrain_class", pretrain_class)
    config = config_to_dict(_config())
    with pytest.raises(RuntimeError, match=r"pretraining failed for \['swing'\]"):
        pretrain_recorded(config, store_uri, "synthetic", version, ["reach", "swing"], run_name="r1")
    first = store.read_json(store.join(store_uri, "runs", "r1", "backbones.json"))
    assert list(first) == ["reach"]  # recorded as it was published, before swing failed
    done = pretrain_recorded(config, store_uri, "synthetic", version, ["reach", "swing"], run_name="r1")
    assert sorted(calls) == ["reach", "swing", "swing"]  # reach pretrained once
    assert done["reach"] == {**done["reach"], "uri": first["reach"], "reused": True}
    assert done["swing"]["reused"] is False
    assert done["swing"]["version"] == done["reach"]["version"]  # one version names the run's backbones
    assert store.read_json(store.join(store_uri, "runs", "r1", "backbones.json")) == {a: done[a]["uri"] for a in done}
