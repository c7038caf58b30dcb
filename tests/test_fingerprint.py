"""A class's training fingerprint: what changes the model changes it, what does not leaves it (issue 15)."""

from __future__ import annotations

import hashlib

import pytest
from test_embeddings import DATASET_MANIFEST, _splits

from lrprop.config import config_from_dict, config_to_dict
from lrprop.registry.embeddings import publish_embeddings
from lrprop.registry.fingerprint import code_version, source_digest, training_fingerprint, unchanged_version
from lrprop.registry.run_published import already_published
from lrprop.training.checkpoint import export_model
from lrprop.training.train import build_model

BASE = {"model": {"backbone": "small_cnn", "cnn_width": 4, "num_layers": 1}, "data": {"frames_per_view": 8, "image_size": 32}}


def _fingerprint(changes: dict | None = None, action: str = "reach", manifest: dict = DATASET_MANIFEST) -> dict:
    tree = {section: dict(values) for section, values in BASE.items()}
    for section, values in (changes or {}).items():
        tree[section] = {**tree.get(section, {}), **values}
    return training_fingerprint(config_from_dict(tree).for_class(action), manifest)


def test_the_fingerprint_moves_with_what_makes_the_model_and_only_with_it():
    same = _fingerprint()
    assert same == _fingerprint() and len(same["sha256"]) == 64 and same["code_version"] == code_version()
    # Each of these trains another model.
    for changes in (
        {"loss": {"alpha": 0.02}},
        {"optim": {"epochs": 3}},
        {"train": {"seed": 1}},
        {"pretrain": {"steps": 5}},
        {"ray": {"gpus_per_worker": 1}},  # on a GPU: bf16 autocast and channels-last
        {"train": {"device": "cuda"}},
    ):
        assert _fingerprint(changes)["sha256"] != same["sha256"], changes
    assert _fingerprint({"ray": {"gpus_per_worker": 1}}) == _fingerprint({"ray": {"gpus_per_worker": 0.5}})
    assert _fingerprint(manifest={**DATASET_MANIFEST, "content_hash": "cd" * 32})["sha256"] != same["sha256"]
    # Where and how fast it trains, and what happens to it afterwards, do not.
    for changes in (
        {"ray": {"address": "auto", "cpus_per_worker": 4, "max_failures": 5}},
        {"train": {"log_every": 1, "keep_checkpoints": 5, "device": "cpu"}},
        {"data": {"loader_workers": 2}},
        {"promotion": {"tolerance": 0.5}},
        {"dataset": {"source": "s3://elsewhere/raw"}},
    ):
        assert _fingerprint(changes)["sha256"] == same["sha256"], changes
    # A class's own override changes that class only.
    override = {"actions": {"swing": {"loss": {"beta": 0.4}}}}
    assert _fingerprint(override, "reach")["sha256"] == same["sha256"]
    assert _fingerprint(override, "swing")["sha256"] != _fingerprint(None, "swing")["sha256"]
    # Data without a content hash cannot be known unchanged.
    assert _fingerprint(manifest={"version": DATASET_MANIFEST["version"]})["sha256"] is None


def test_source_digest_sees_every_source_file_by_path_and_content(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "b.py").write_text("y = 2\n")
    (tmp_path / "notes.txt").write_text("not code")
    expected = hashlib.sha256(b"a.py\0x = 1\n\0sub/b.py\0y = 2\n\0").hexdigest()  # the documented framing
    assert source_digest(tmp_path) == expected
    (tmp_path / "notes.txt").write_text("edited")
    assert source_digest(tmp_path) == expected
    (tmp_path / "sub" / "b.py").write_text("y = 3\n")
    assert source_digest(tmp_path) != expected


@pytest.fixture
def store_root(tmp_path):
    return str(tmp_path / "store")


def _publish_with_meta(root, tmp_path, meta: dict, name: str):
    config = config_from_dict(BASE)
    model_dir = export_model(tmp_path / name, build_model(config), config_to_dict(config), meta)
    return publish_embeddings(
        root, dataset="synthetic", action="reach", splits=_splits(0), model_dir=model_dir, dataset_manifest=DATASET_MANIFEST
    )


def test_only_a_latest_version_trained_under_the_same_fingerprint_is_unchanged(store_root, tmp_path):
    fingerprint = _fingerprint()
    assert unchanged_version(store_root, "synthetic", "reach", fingerprint) is None  # nothing published
    first = _publish_with_meta(store_root, tmp_path, {"action": "reach", "fingerprint": fingerprint}, "m1")
    assert unchanged_version(store_root, "synthetic", "reach", fingerprint)["version"] == first["version"]
    assert unchanged_version(store_root, "synthetic", "reach", _fingerprint({"loss": {"alpha": 0.5}})) is None
    assert unchanged_version(store_root, "synthetic", "reach", {**fingerprint, "sha256": None}) is None
    # A later version made otherwise (no fingerprint: published by hand) is what readers get: not unchanged.
    _publish_with_meta(store_root, tmp_path, {"action": "reach"}, "m2")
    assert unchanged_version(store_root, "synthetic", "reach", fingerprint) is None


def test_a_version_is_already_published_only_with_the_same_run_checkpoint_and_weights(store_root, tmp_path):
    meta = {"action": "reach", "run": "r1", "checkpoint": f"{store_root}/runs/r1/ray/reach/c1", "weights_sha256": "aa" * 32}
    published = _publish_with_meta(store_root, tmp_path, meta, "m1")
    record = {"dataset": "synthetic", "version": published["version"], "uri": "…"}
    assert already_published(store_root, "synthetic", "reach", meta, record)["version"] == published["version"]
    assert already_published(store_root, "synthetic", "reach", meta, None)["version"] == published["version"]  # via the latest
    # Retrained to the same checkpoint URI with other weights (the class's Ray folder removed, a changed config).
    assert already_published(store_root, "synthetic", "reach", {**meta, "weights_sha256": "bb" * 32}, record) is None
    assert already_published(store_root, "synthetic", "reach", {**meta, "run": "r2"}, record) is None
    unnamed = {k: v for k, v in meta.items() if k != "weights_sha256"}  # made before weights were fingerprinted
    assert already_published(store_root, "synthetic", "reach", unnamed, record) is None


def test_a_malformed_record_of_a_runs_versions_is_an_error_naming_it(store_root):
    from lrprop import store
    from lrprop.registry.run_published import published_record, read_published

    uri = published_record(store_root, "r1")
    for bad in ([], {"reach": "v1"}, {"reach": {"dataset": "synthetic", "uri": "…"}}):
        store.write_json(uri, bad)
        with pytest.raises(ValueError, match=f"{uri}: not a record of published versions"):
            read_published(store_root, "r1")
    store.write_json(uri, {"../x": {"dataset": "synthetic", "version": "v20260101T000000000000Z-00000000", "uri": "…"}})
    with pytest.raises(ValueError, match="invalid action name"):
        read_published(store_root, "r1")
