"""``lrprop store check`` and ``lrprop store gc`` (lrprop/registry/store_audit.py, issue 14): every
version is checked against its manifest, each damage named by file; versions a killed writer
left without a manifest are listed and, asked to, removed once older than --min-age.

The store is made by lrprop's own writers (ingestion, the backbone registry); the damage and the
killed writer are made by hand. Oracles: the files' own sizes and bytes, the registry's readers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import torch
from tiny import tiny

from lrprop import store
from lrprop.cli import main
from lrprop.config import config_from_dict
from lrprop.core.model import SmallCNNBackbone, backbone_weights_bytes
from lrprop.ingest.synthetic import ensure_synthetic_dataset
from lrprop.registry.backbones import WEIGHTS_FILE, backbones_collection, list_backbones, publish_backbone
from lrprop.registry.store_audit import audit_store, remove_partial, version_created

SMALL_SET = {"num_actions": 1, "train_videos": 3, "val_videos": 2, "length_range": [20, 30], "frame_size": 32}


def _store(tmp_path):
    """A store with one data-set version and one backbone version, as lrprop writes them."""
    root = str(tmp_path / "store")
    config = config_from_dict(tiny(synthetic=SMALL_SET))
    version = ensure_synthetic_dataset(config, root)
    torch.manual_seed(0)
    publish_backbone(
        root,
        dataset="synthetic",
        action="reach",
        weights=backbone_weights_bytes(SmallCNNBackbone(width=8)),
        config=config,
        dataset_manifest=store.read_manifest(store.datasets_collection(root, "synthetic"), version),
        losses=[1.0],
        frames_per_s=1.0,
        wall_s=1.0,
        device="cpu",
    )
    return root, version


def _killed_writer(root: str, made: datetime) -> str:
    """What a publish killed before its manifest leaves: a version folder with a file, no manifest."""
    collection = backbones_collection(root, "synthetic", "reach")
    version = store.new_version_id(made)
    store.write_entry(store.join(collection, version), WEIGHTS_FILE, b"half of the weights")
    return version


def test_every_version_of_a_store_lrprop_wrote_checks_ok(tmp_path):
    root, _ = _store(tmp_path)
    reports = audit_store(root)
    assert sorted((r.kind, r.state) for r in reports) == [("backbones", "ok"), ("datasets", "ok")]
    assert all(r.bytes > 0 and r.problems == [] for r in reports)


def test_each_damage_is_named_by_its_file(tmp_path):
    root, version = _store(tmp_path)
    dataset_dir = tmp_path / "store" / "datasets" / "synthetic" / version
    (parquet,) = dataset_dir.glob("action=reach/split=train/*.parquet")
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the size is the same
    parquet.write_bytes(bytes(data))
    (val,) = dataset_dir.glob("action=reach/split=val/*.parquet")
    val.unlink()
    (weights,) = (tmp_path / "store" / "backbones").glob(f"synthetic/reach/*/{WEIGHTS_FILE}")
    weights.write_bytes(weights.read_bytes()[:-10])

    by_kind = {r.kind: r for r in audit_store(root)}
    assert by_kind["datasets"].state == by_kind["backbones"].state == "damaged"
    assert sorted(by_kind["datasets"].problems) == sorted([f"{parquet}: sha256 differs from the manifest", f"{val}: missing"])
    size = weights.stat().st_size
    assert by_kind["backbones"].problems == [f"{weights}: {size} bytes, the manifest says {size + 10}"]
    # Sizes only: the flipped byte is not seen, the rest is.
    sizes_only = {r.kind: r for r in audit_store(root, checksums=False)}
    assert sizes_only["datasets"].problems == [f"{val}: missing"]


def test_gc_removes_partial_versions_older_than_min_age_and_nothing_else(tmp_path):
    root, _ = _store(tmp_path)
    now = datetime.now(UTC)
    old = _killed_writer(root, now - timedelta(days=2))
    young = _killed_writer(root, now - timedelta(minutes=5))
    (tmp_path / "store" / "backbones" / "synthetic" / "reach" / "notes").mkdir()  # not lrprop's
    published = list_backbones(root)

    reports = audit_store(root)
    assert sorted(r.version for r in reports if r.state == "partial") == sorted([old, young])
    assert [r.version for r in reports if r.state == "unknown"] == ["notes"]
    assert version_created(old) == (now - timedelta(days=2)).replace(microsecond=version_created(old).microsecond)

    would = remove_partial(reports, min_age_s=24 * 3600, dry_run=True)
    assert [r.version for r in would] == [old]
    assert (tmp_path / "store" / "backbones" / "synthetic" / "reach" / old).exists()  # a dry run removes nothing
    removed = remove_partial(reports, min_age_s=24 * 3600)
    assert [r.version for r in removed] == [old]
    left = {r.version: r.state for r in audit_store(root)}
    assert old not in left and left[young] == "partial" and left["notes"] == "unknown"
    assert list_backbones(root) == published  # the complete versions are untouched


def test_cli_store_check_exits_1_on_damage_and_gc_lists_before_it_removes(tmp_path, capsys):
    root, _ = _store(tmp_path)
    assert main(["store", "check", "--store", root]) == 0
    assert capsys.readouterr().out.strip() == "2 versions (sizes and sha256): 2 ok, 0 damaged, 0 partial, 0 unknown"

    old = _killed_writer(root, datetime.now(UTC) - timedelta(days=3))
    (weights,) = [p for p in (tmp_path / "store" / "backbones").glob(f"synthetic/reach/*/{WEIGHTS_FILE}") if old not in str(p)]
    weights.write_bytes(b"x" + weights.read_bytes()[1:])
    assert main(["store", "check", "--store", root]) == 1
    out = capsys.readouterr().out
    assert f"damaged  {weights.parent}" in out and f"{weights}: sha256 differs from the manifest" in out
    assert f"partial  {weights.parent.parent / old}" in out and "1 damaged, 1 partial" in out

    assert main(["store", "gc", "--store", root]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"partial {weights.parent.parent / old} (") and "--remove deletes them" in out
    assert main(["store", "gc", "--store", root, "--min-age", "7d", "--remove"]) == 0
    assert capsys.readouterr().out.startswith("removed 0 partial versions (0.0 MB); 1 younger than --min-age left alone")
    assert main(["store", "gc", "--store", root, "--min-age", "1h", "--remove"]) == 0
    assert capsys.readouterr().out.startswith(f"removed {weights.parent.parent / old} (")
    assert not (weights.parent.parent / old).exists()
    with pytest.raises(SystemExit):
        main(["store", "gc", "--store", root, "--min-age", "soon"])


@pytest.mark.integration
def test_check_and_gc_on_s3(s3_bucket):
    import s3fs

    root = f"{s3_bucket}/lrprop"
    config = config_from_dict(tiny(synthetic=SMALL_SET))
    version = ensure_synthetic_dataset(config, root)
    old = _killed_writer(root, datetime.now(UTC) - timedelta(days=2))
    reports = {r.version: r for r in audit_store(root)}
    assert reports[version].state == "ok" and reports[version].uri == f"{root}/datasets/synthetic/{version}"
    assert reports[old].state == "partial"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    (parquet,) = fs.glob(f"{root}/datasets/synthetic/{version}/action=reach/split=val/*.parquet")
    fs.pipe_file(parquet, b"PAR1")
    damaged = {r.version: r for r in audit_store(root)}[version]
    assert damaged.state == "damaged" and damaged.problems[0].startswith(f"s3://{parquet}: 4 bytes, the manifest says ")
    assert [r.version for r in remove_partial(audit_store(root), min_age_s=3600)] == [old]
    assert old not in {r.version for r in audit_store(root)}
