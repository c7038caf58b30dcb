"""config.dataset picks the data-set version a pipeline run trains on (lrprop.ingest.from_config)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lrprop import store
from lrprop.config import config_from_dict
from lrprop.ingest.from_config import dataset_version


def _generic_source(root, n_videos=3):
    rng = np.random.default_rng(0)
    for v in range(n_videos):
        folder = root / "train" / "act" / f"v{v}"
        folder.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i:06d}.jpg", quality=95)
        np.save(root / "train" / "act" / f"v{v}.npy", np.array([0, 0, 1, 1]))


def _config(**dataset):
    return config_from_dict({"dataset": dataset, "ingest": {"frame_size": 16}})


def test_a_source_is_ingested_once_and_then_reused(tmp_path):
    _generic_source(tmp_path / "raw")
    config = _config(name="mine", kind="generic", source=str(tmp_path / "raw"))
    first = dataset_version(config, str(tmp_path / "store"))
    assert dataset_version(config, str(tmp_path / "store")) == first  # unchanged source: same version
    manifest = store.read_manifest(store.datasets_collection(str(tmp_path / "store"), "mine"), first)
    assert manifest["counts"] == {"act": {"train": {"videos": 3, "frames": 12}}}
    # Without a source the latest version in the store is used; a named version must exist.
    assert dataset_version(_config(name="mine", kind="generic"), str(tmp_path / "store")) == first
    assert dataset_version(_config(name="mine", kind="generic", version=first), str(tmp_path / "store")) == first
    with pytest.raises(FileNotFoundError, match="v20200101T000000000000Z-00000000"):
        dataset_version(_config(name="mine", kind="generic", version="v20200101T000000000000Z-00000000"), str(tmp_path / "store"))


def test_no_source_and_nothing_in_the_store_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no version of data set 'pennaction'"):
        dataset_version(_config(name="pennaction", kind="pennaction"), str(tmp_path / "store"))


def test_the_dataset_name_must_be_a_path_component():
    from lrprop.config import ConfigError

    with pytest.raises(ConfigError, match="dataset.name"):
        _config(name="../elsewhere")


def test_the_synthetic_set_goes_under_the_configured_name(tmp_path):
    config = config_from_dict(
        {
            "dataset": {"name": "demo"},
            "synthetic": {"num_actions": 1, "train_videos": 2, "val_videos": 0, "length_range": [20, 24]},
        }
    )
    version = dataset_version(config, str(tmp_path / "store"))
    assert store.list_versions(store.datasets_collection(str(tmp_path / "store"), "demo")) == [version]
    assert store.list_versions(store.datasets_collection(str(tmp_path / "store"), "synthetic")) == []


def test_ingest_source_names_the_kinds_it_knows(tmp_path):
    from lrprop.ingest.from_config import ingest_source

    with pytest.raises(ValueError, match=r"unknown data set kind 'mp4'; one of pennaction, pouring, generic, synthetic"):
        ingest_source(_config(name="x"), str(tmp_path), kind="mp4", source=str(tmp_path), dataset="x")
