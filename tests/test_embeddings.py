"""Published embeddings: immutable versions, verified pulls, no collisions, the CLI."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pyarrow.parquet as pq
import pytest
from safetensors.torch import load_file

from lrprop import store
from lrprop.alignment.models import load_published_model
from lrprop.cli import main
from lrprop.config import config_from_dict, config_to_dict
from lrprop.registry.embeddings import (
    ChecksumError,
    embeddings_collection,
    list_embeddings,
    publish_embeddings,
    pull_embeddings,
    to_numpy,
)
from lrprop.training.checkpoint import export_model
from lrprop.training.train import build_model

CONFIG = config_from_dict(
    {"model": {"backbone": "small_cnn", "cnn_width": 4, "num_layers": 1}, "data": {"frames_per_view": 8, "image_size": 32}}
)
DATASET_MANIFEST = {"version": "v20260101T000000000000Z-00000000", "content_hash": "ab" * 32}


@pytest.fixture
def model_dir(tmp_path):
    return export_model(tmp_path / "model", build_model(CONFIG), config_to_dict(CONFIG), {"action": "reach"})


def _splits(seed: int):
    rng = np.random.default_rng(seed)
    return {
        "train": (["t2", "t1"], [rng.normal(size=(5, 16)), rng.normal(size=(3, 16))], [np.arange(5), np.array([-1, 0, 1])]),
        "val": (["v1"], [rng.normal(size=(4, 16))], [np.zeros(4, int)]),
    }


def _publish(root, model_dir, seed=0, action="reach"):
    return publish_embeddings(
        root, dataset="synthetic", action=action, splits=_splits(seed), model_dir=model_dir, dataset_manifest=DATASET_MANIFEST
    )


@pytest.fixture(params=["local", "memory"])
def root(request, tmp_path):
    return str(tmp_path / "store") if request.param == "local" else f"memory://emb-{uuid.uuid4().hex}"


def test_pull_returns_exactly_what_was_published(root, model_dir):
    manifest = _publish(root, model_dir, seed=1)
    table, pulled = pull_embeddings(root, "synthetic", "reach")
    assert pulled["version"] == manifest["version"] and table.num_rows == manifest["rows"] == 12
    cols = to_numpy(table)
    splits = _splits(1)
    for split, (ids, embs, labels) in splits.items():
        for vid, emb, lab in zip(ids, embs, labels):
            rows = (cols["split"] == split) & (cols["video_id"] == vid)
            order = np.argsort(cols["frame_idx"][rows])
            np.testing.assert_array_equal(cols["embedding"][rows][order], emb.astype(np.float32))
            np.testing.assert_array_equal(cols["label"][rows][order], np.where(lab < 0, -1, lab))
    assert table.schema.field("embedding").type.list_size == 16
    assert manifest["dataset_content_hash"] == DATASET_MANIFEST["content_hash"]
    assert manifest["model"]["config"]["model"]["backbone"] == "small_cnn"


def test_the_manifest_records_the_class_metrics_beside_the_baseline(tmp_path, model_dir):
    from lrprop.config import EvalConfig
    from lrprop.evaluation.evaluate import score_with_references, with_pace
    from lrprop.evaluation.report import flatten_metrics

    rng = np.random.default_rng(5)
    labels = [np.minimum(np.arange(L) * 3 // L, 2) for L in (12, 15, 11, 14, 13)]
    embs = [lab[:, None] + rng.normal(size=(len(lab), 16)) for lab in labels]
    ids = [f"v{i}" for i in range(5)]
    metrics = score_with_references(embs[:2], labels[:2], embs[2:], labels[2:], EvalConfig(fractions=(1.0,), ap_ks=(1,)))
    # The pace errors, as evaluate_class adds them: the model's, the time stretch's, the gain (baseline − model)
    metrics = with_pace(metrics, {"repaced": 0.04, "trimmed": 0.09}, {"repaced": 0.12, "trimmed": 0.10})
    root = str(tmp_path / "store")
    publish_embeddings(
        root,
        dataset="synthetic",
        action="reach",
        splits={"train": (ids[:2], embs[:2], labels[:2]), "val": (ids[2:], embs[2:], labels[2:])},
        model_dir=model_dir,
        dataset_manifest=DATASET_MANIFEST,
        metrics=metrics,
    )
    recorded = pull_embeddings(root, "synthetic", "reach")[1]["metrics"]
    for key in ("baseline", "oracle", "gain"):
        assert flatten_metrics(recorded[key]) == pytest.approx(flatten_metrics(metrics[key]), abs=1e-12), key
    assert flatten_metrics(recorded) == pytest.approx(flatten_metrics(metrics), abs=1e-12)
    assert recorded["pace"] == {"repaced": 0.04, "trimmed": 0.09} and recorded["baseline"]["pace"]["repaced"] == 0.12
    assert recorded["gain"]["pace"] == pytest.approx({"repaced": 0.08, "trimmed": 0.01}, abs=1e-12)


def test_a_second_publish_is_a_new_version_and_the_first_stays_readable(root, model_dir):
    first = _publish(root, model_dir, seed=1)
    second = _publish(root, model_dir, seed=2)
    assert second["version"] > first["version"]
    assert pull_embeddings(root, "synthetic", "reach")[1]["version"] == second["version"]
    old, _ = pull_embeddings(root, "synthetic", "reach", first["version"])
    cols = to_numpy(old)
    rows = (cols["split"] == "train") & (cols["video_id"] == "t1")
    np.testing.assert_array_equal(cols["embedding"][rows], _splits(1)["train"][1][1].astype(np.float32))
    assert list_embeddings(root) == [
        {"dataset": "synthetic", "action": "reach", "latest_version": second["version"], "n_versions": 2, "aliases": {}}
    ]


def test_concurrent_publishes_never_collide(tmp_path, model_dir):
    root = str(tmp_path / "store")
    results, errors = [], []

    def publish(seed):
        try:
            results.append(_publish(root, model_dir, seed=seed)["version"])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 6
    assert store.list_versions(embeddings_collection(root, "synthetic", "reach")) == sorted(results)


def test_a_damaged_file_fails_the_pull(tmp_path, model_dir):
    root = str(tmp_path / "store")
    manifest = _publish(root, model_dir)
    path = tmp_path / "store" / "embeddings" / "synthetic" / "reach" / manifest["version"] / "embeddings.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="embeddings.parquet"):
        pull_embeddings(root, "synthetic", "reach")
    weights = path.parent / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ChecksumError, match="model.safetensors"):
        load_published_model(root, "synthetic", "reach")


def test_a_version_without_manifest_is_invisible(tmp_path, model_dir):
    root = str(tmp_path / "store")
    done = _publish(root, model_dir)
    half = tmp_path / "store" / "embeddings" / "synthetic" / "reach" / store.new_version_id()
    (half / "model").mkdir(parents=True)
    (half / "embeddings.parquet").write_bytes(b"partial")
    assert pull_embeddings(root, "synthetic", "reach")[1]["version"] == done["version"]
    assert list_embeddings(root)[0]["n_versions"] == 1


def test_published_model_loads_with_its_weights(tmp_path, model_dir):
    root = str(tmp_path / "store")
    _publish(root, model_dir)
    model = load_published_model(root, "synthetic", "reach")
    original = load_file(model_dir / "model.safetensors")
    loaded = model.state_dict()
    assert original.keys() == loaded.keys()
    assert all(np.array_equal(original[k].numpy(), loaded[k].numpy()) for k in original)


def test_names_are_validated_before_they_become_paths(tmp_path, model_dir):
    with pytest.raises(ValueError, match="action name"):
        _publish(str(tmp_path / "store"), model_dir, action="../../etc")
    with pytest.raises(ValueError, match="invalid version"):
        pull_embeddings(str(tmp_path / "store"), "synthetic", "reach", version="../x")


def test_cli_list_and_pull(tmp_path, model_dir, capsys):
    root = str(tmp_path / "store")
    first = _publish(root, model_dir, seed=1)
    _publish(root, model_dir, seed=2)
    _publish(root, model_dir, seed=3, action="swing")
    assert main(["embeddings", "list", "--store", root]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[1:]
    assert [line.split()[:2] + [line.split()[3]] for line in lines] == [["synthetic", "reach", "2"], ["synthetic", "swing", "1"]]
    out = tmp_path / "pulled" / "reach.parquet"
    args = ["embeddings", "pull", "--store", root, "--dataset", "synthetic", "--action", "reach", "--version", first["version"]]
    assert main([*args, "--out", str(out)]) == 0
    assert "(embeddings.parquet's sha256 and row count verified)" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.num_rows == first["rows"]
    assert table.equals(pull_embeddings(root, "synthetic", "reach", first["version"])[0])
    assert not list(out.parent.glob(".*.tmp"))
    assert main(["embeddings", "pull", "--store", root, "--dataset", "synthetic", "--action", "nope", "--out", str(out)]) == 2


def test_a_reader_given_its_endpoint_as_a_storage_option_reads_an_s3_store(s3_bucket, s3_endpoint, model_dir, monkeypatch):
    """Users pulling embeddings into their own tools may give fsspec options (here moto's
    endpoint) instead of the environment; credentials still come from the environment."""
    import s3fs

    root = f"{s3_bucket}/lrprop"
    manifest = _publish(root, model_dir, seed=1)  # through the environment's endpoint
    # From here the environment's endpoint has nothing listening: only the option reaches moto.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    s3fs.S3FileSystem.clear_instance_cache()
    options = {"endpoint_url": s3_endpoint}
    try:
        table, pulled = pull_embeddings(root, "synthetic", "reach", storage_options=options)
        assert pulled["version"] == manifest["version"] and table.num_rows == manifest["rows"]
        assert [e["latest_version"] for e in list_embeddings(root, storage_options=options)] == [manifest["version"]]
        model = load_published_model(root, "synthetic", "reach", storage_options=options)
        assert not model.training
        with pytest.raises(ValueError, match=r"\['secret'\]: credentials are read from the environment"):
            pull_embeddings(root, "synthetic", "reach", storage_options={**options, "secret": "testing"})
    finally:
        s3fs.S3FileSystem.clear_instance_cache()  # no instance bound to the dead endpoint outlives the test
