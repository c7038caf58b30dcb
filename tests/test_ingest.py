"""Tests of ingestion (lrprop/ingest/), the Parquet reader (lrprop/data/parquet.py) and the CLI.

Every source is made here in its real format: JPEG frames with PIL, Penn Action ``.mat`` files with
scipy, Pouring TFRecords with the ``tfrecord`` package, a video file with PyAV. Oracles: the
files themselves (decoded with PIL / numpy, read with pyarrow.dataset), the nearest-index
resampling of METHOD.md §6 computed here from its definition, and the invariants of the storage
contract (a version without a manifest is invisible; the same content gives the same hash).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as pds
import pytest
import scipy.io
import torch
from PIL import Image
from tfrecord.writer import TFRecordWriter
from tiny import tiny

from lrprop import store
from lrprop.cli import main
from lrprop.config import SyntheticConfig, config_from_dict
from lrprop.data.parquet import ParquetVideos
from lrprop.ingest.generic import read_generic
from lrprop.ingest.pennaction import read_pennaction
from lrprop.ingest.pouring import POURING_PHASES, read_pouring
from lrprop.ingest.records import IngestError
from lrprop.ingest.synthetic import write_synthetic
from lrprop.ingest.writer import ingest

SIZE = 16  # frames made in these tests are SIZE x SIZE and ingested at frame_size=SIZE


# ----------------------------------------------------------------------------- helpers


def _jpeg(frame: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _frame(i: int, seed: int = 0) -> np.ndarray:
    """A SIZE x SIZE frame whose colours encode (seed, i), so frames are told apart after decoding."""
    rng = np.random.default_rng([seed, i])
    frame = np.empty((SIZE, SIZE, 3), np.uint8)
    frame[:] = rng.integers(0, 256, 3)
    frame[: SIZE // 2, : SIZE // 2] = rng.integers(0, 256, 3)
    return frame


def _decode(path_or_bytes) -> np.ndarray:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _frame_folder(folder: Path, n: int, seed: int = 0, first: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i + first:06d}.jpg"
        path.write_bytes(_jpeg(_frame(i, seed)))
        paths.append(path)
    return paths


def _generic_video(root: Path, split: str, action: str, video_id: str, n: int, labels=None, seed: int = 0) -> Path:
    """A frame-folder video in the generic layout; ``labels`` (if given) saved as <id>.npy beside it."""
    folder = root / split / action / video_id
    _frame_folder(folder, n, seed)
    if labels is not None:
        np.save(root / split / action / f"{video_id}.npy", np.asarray(labels, dtype=np.int64))
    return folder


def _ingest(items, store_uri, dataset: str = "demo", **kwargs):
    kwargs = {"frame_size": SIZE, "progress": False, "threads": 2, "source": "test", **kwargs}
    return ingest(items, store_uri=str(store_uri), dataset=dataset, **kwargs)


def _version_uri(store_uri, dataset: str, version: str) -> str:
    return store.join(store.datasets_collection(str(store_uri), dataset), version)


def _rows(store_uri, dataset: str, version: str) -> dict[tuple[str, str, str], tuple[list[int], list]]:
    """{(action, split, video_id): (frame_idx list, label list)} read with pyarrow.dataset."""
    table = pds.dataset(_version_uri(store_uri, dataset, version), partitioning="hive").to_table()
    out: dict = {}
    for row in table.select(["action", "split", "video_id", "frame_idx", "label"]).to_pylist():
        idx, labels = out.setdefault((row["action"], row["split"], row["video_id"]), ([], []))
        idx.append(row["frame_idx"])
        labels.append(row["label"])
    return out


def _all_frames(source: ParquetVideos, index: int) -> np.ndarray:
    return source.read_frames(index, np.arange(source.num_frames(index)))


# ----------------------------------------------------------------------------- synthetic round trip

SYN = SyntheticConfig(num_actions=2, train_videos=3, val_videos=2, frame_size=32, length_range=(20, 40), seed=3)


@pytest.fixture(scope="module")
def synth_raw(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    write_synthetic(str(raw), SYN, threads=2)
    return raw


def _source_videos(raw: Path) -> dict[tuple[str, str, str], tuple[list[Path], np.ndarray]]:
    """The generic layout read by hand: {(action, split, id): (frame files, labels)}."""
    out = {}
    for split_dir in sorted(p for p in raw.iterdir() if p.is_dir()):
        for action_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for video_dir in sorted(p for p in action_dir.iterdir() if p.is_dir()):
                frames = sorted(video_dir.glob("*.jpg"))
                labels = np.load(action_dir / f"{video_dir.name}.npy")
                out[(action_dir.name, split_dir.name, video_dir.name)] = (frames, labels)
    return out


def _ingest_synth(raw, store_uri, **kwargs):
    return _ingest(read_generic(str(raw)), store_uri, dataset="synthetic", frame_size=SYN.frame_size, **kwargs)


def test_synth_ingest_read_returns_exactly_what_went_in(synth_raw, tmp_path):
    expected = _source_videos(synth_raw)
    assert len(expected) == SYN.num_actions * (SYN.train_videos + SYN.val_videos)
    result = _ingest_synth(synth_raw, tmp_path / "store")
    assert result.created
    manifest = result.manifest
    assert manifest["skipped"] == [] and manifest["frame_size"] == SYN.frame_size
    actions = sorted({a for a, _, _ in expected})
    assert sorted(manifest["counts"]) == actions
    for action in actions:
        for split, n_videos in (("train", SYN.train_videos), ("val", SYN.val_videos)):
            want = {vid: expected[(a, s, vid)] for a, s, vid in expected if (a, s) == (action, split)}
            source = ParquetVideos(str(tmp_path / "store"), "synthetic", action=action, split=split)
            assert source.version == result.version
            assert len(source) == n_videos == len(want)
            assert sorted(source.video_id(i) for i in range(len(source))) == sorted(want)
            counts = manifest["counts"][action][split]
            assert counts == {"videos": n_videos, "frames": sum(len(f) for f, _ in want.values())}
            for i in range(len(source)):
                frames, labels = want[source.video_id(i)]
                assert SYN.length_range[0] <= len(frames) <= SYN.length_range[1]
                assert source.num_frames(i) == len(frames)
                assert np.array_equal(source.labels(i), labels)
                assert np.array_equal(_all_frames(source, i), np.stack([_decode(p) for p in frames]))
                # Only some frames, out of order and repeated, as a view asks for them.
                pick = np.array([len(frames) - 1, 0, 3, 3])
                assert np.array_equal(source.read_frames(i, pick), np.stack([_decode(frames[j]) for j in pick]))
        # The manifest's phase count is what the labels say.
        labels = np.concatenate([lab for (a, _, _), (_, lab) in expected.items() if a == action])
        assert manifest["num_phases"][action] == int(labels.max()) + 1


def test_views_decoded_and_augmented_on_the_device_equal_those_of_the_loader(synth_raw, tmp_path):
    # data.decode_on: device: the workers ship each view's JPEG bytes, and the training loop
    # decodes them with TorchCodec (nvJPEG on a GPU) before augmenting. On the CPU,
    # TorchCodec's decoder and Pillow give the same pixels, so the views are identical.
    from lrprop.data.augment import train_transform
    from lrprop.data.views import ViewDataset, collate_deferred_views, transform_views

    _ingest_synth(synth_raw, tmp_path / "store")
    action = sorted(ParquetVideos(str(tmp_path / "store"), "synthetic", split=None).manifest["counts"])[0]
    source = ParquetVideos(str(tmp_path / "store"), "synthetic", action=action, split="train")
    pick = np.array([5, 0, 5, 2])
    assert np.array_equal(np.stack([_decode(b) for b in source.read_encoded(1, pick)]), source.read_frames(1, pick))

    T, keys = 24, [(2, i) for i in range(len(source))]
    in_loader = ViewDataset(source, T, num_views=2, transform=train_transform(24), seed=5)
    on_device = ViewDataset(source, T, num_views=2, seed=5, defer_transform=True, defer_decode=True)
    batch = collate_deferred_views([on_device[key] for key in keys])
    assert all(data.dtype == torch.uint8 and data.dim() == 1 for views in batch["frames"] for data in views)
    got = transform_views(batch, train_transform(24), T, "cpu")
    want = torch.stack([in_loader[key]["frames"] for key in keys])
    assert got.shape == want.shape and torch.equal(got, want)

    # A corrupt frame is reported with the videos of its batch, not decoded into noise.
    batch["frames"][1][0] = torch.zeros_like(batch["frames"][1][0])
    with pytest.raises(ValueError, match=r"decode the JPEG frames of the videos at indices \[0, 1, 2\]"):
        transform_views(batch, train_transform(24), T, "cpu")
    with pytest.raises(ValueError, match="defer_transform"):
        ViewDataset(source, T, defer_decode=True)


def test_training_that_decodes_on_the_device_equals_training_that_decodes_in_the_loader(synth_raw, tmp_path):
    # End to end through train(): a loader worker ships JPEG bytes, the loop decodes them.
    from lrprop.training.train import train

    _ingest_synth(synth_raw, tmp_path / "store")
    action = sorted(ParquetVideos(str(tmp_path / "store"), "synthetic", split=None).manifest["counts"])[0]
    source = ParquetVideos(str(tmp_path / "store"), "synthetic", action=action, split="train")
    base = tiny(optim={"epochs": 2}, data={"frames_per_view": 12, "videos_per_step": 1, "augment": True, "loader_workers": 1})
    on_device = tiny(**{**base, "data": {**base["data"], "augment_on": "device", "decode_on": "device"}})
    a = train(config_from_dict(base), source, checkpoint_dir=tmp_path / "a")
    b = train(config_from_dict(on_device), source, checkpoint_dir=tmp_path / "b")
    assert a.step == b.step == 2 * len(source)
    state_a, state_b = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert a.history == b.history


def test_pyarrow_dataset_reads_the_version_with_action_and_split(synth_raw, tmp_path):
    result = _ingest_synth(synth_raw, tmp_path / "store")
    expected = _source_videos(synth_raw)
    table = pds.dataset(_version_uri(tmp_path / "store", "synthetic", result.version), partitioning="hive").to_table()
    assert {"action", "split", "video_id", "frame_idx", "label", "jpeg"} <= set(table.column_names)
    total = sum(c["frames"] for per_split in result.manifest["counts"].values() for c in per_split.values())
    assert table.num_rows == total == sum(len(f) for f, _ in expected.values())
    rows = _rows(tmp_path / "store", "synthetic", result.version)
    assert set(rows) == set(expected)
    for key, (idx, labels) in rows.items():
        frames, want = expected[key]
        assert sorted(idx) == list(range(len(frames)))
        assert [labels[idx.index(j)] for j in range(len(frames))] == want.tolist()


def test_memory_and_local_ingestion_give_the_same_content_hash(synth_raw, tmp_path, memory_root):
    local = _ingest_synth(synth_raw, tmp_path / "store")
    # The source generated again into memory, and the store in memory too.
    raw_mem = store.join(memory_root, "raw")
    write_synthetic(raw_mem, SYN, threads=2)
    remote = _ingest(read_generic(raw_mem), store.join(memory_root, "store"), dataset="synthetic", frame_size=SYN.frame_size)
    assert remote.created and local.created
    assert remote.manifest["content_hash"] == local.manifest["content_hash"]
    assert remote.manifest["counts"] == local.manifest["counts"]
    # And the frames read back from memory are those read back from disk.
    action = sorted(local.manifest["counts"])[0]
    a = ParquetVideos(str(tmp_path / "store"), "synthetic", action=action, split="val")
    b = ParquetVideos(store.join(memory_root, "store"), "synthetic", action=action, split="val")
    assert [a.video_id(i) for i in range(len(a))] == [b.video_id(i) for i in range(len(b))]
    for i in range(len(a)):
        assert np.array_equal(_all_frames(a, i), _all_frames(b, i))


def test_reingesting_is_idempotent_and_a_changed_label_makes_a_new_version(synth_raw, tmp_path):
    store_dir = tmp_path / "store"
    collection = store.datasets_collection(str(store_dir), "synthetic")
    first = _ingest_synth(synth_raw, store_dir)
    again = _ingest_synth(synth_raw, store_dir)
    assert again.created is False
    assert again.version == first.version
    assert again.manifest["content_hash"] == first.manifest["content_hash"]
    assert store.list_versions(collection) == [first.version]

    changed = tmp_path / "raw-changed"
    shutil.copytree(synth_raw, changed)
    key, (frames, labels) = next(iter(_source_videos(changed).items()))
    action, split, video_id = key
    new_labels = labels.copy()
    new_labels[-1] = (labels[-1] + 1) % (labels.max() + 1)  # still a valid phase, but different
    assert not np.array_equal(new_labels, labels)
    np.save(changed / split / action / f"{video_id}.npy", new_labels)

    second = _ingest_synth(changed, store_dir)
    assert second.created and second.version != first.version
    assert second.manifest["content_hash"] != first.manifest["content_hash"]
    assert store.list_versions(collection) == [first.version, second.version]
    assert store.latest_version(collection) == second.version

    def labels_of(version):
        source = ParquetVideos(str(store_dir), "synthetic", version=version, action=action, split=split)
        return source.labels([source.video_id(i) for i in range(len(source))].index(video_id))

    assert np.array_equal(labels_of(first.version), labels)  # the old version is still readable
    assert np.array_equal(labels_of(second.version), new_labels)
    assert np.array_equal(labels_of(None), new_labels)  # latest by default


def test_a_changed_frame_or_id_changes_the_content_hash(tmp_path):
    root = tmp_path / "src"
    _good(root)
    store_dir = tmp_path / "store"
    hashes = [_ingest(read_generic(str(root)), store_dir).manifest["content_hash"]]
    # One frame's pixels, in a JPEG of the same byte length so that only the content differs.
    frame = root / "train" / "act" / "g1" / "000002.jpg"
    size = len(frame.read_bytes())
    other = next(j for j in (_jpeg(_frame(i, seed=7)) for i in range(2000)) if len(j) == size and j != frame.read_bytes())
    frame.write_bytes(other)
    result = _ingest(read_generic(str(root)), store_dir)
    assert result.created
    hashes.append(result.manifest["content_hash"])
    (root / "train" / "act" / "g2").rename(root / "train" / "act" / "g3")  # one video's id
    (root / "train" / "act" / "g2.npy").rename(root / "train" / "act" / "g3.npy")
    result = _ingest(read_generic(str(root)), store_dir)
    assert result.created
    hashes.append(result.manifest["content_hash"])
    assert len(set(hashes)) == 3
    assert len(store.list_versions(store.datasets_collection(str(store_dir), "demo"))) == 3


def test_an_ingestion_killed_before_its_manifest_leaves_no_version(synth_raw, tmp_path, monkeypatch):
    store_dir = tmp_path / "store"
    collection = store.datasets_collection(str(store_dir), "synthetic")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "write_manifest", killed)
    with pytest.raises(KeyboardInterrupt):
        _ingest_synth(synth_raw, store_dir)
    monkeypatch.undo()
    assert store.list_versions(collection) == []
    assert store.latest_version(collection) is None
    with pytest.raises(FileNotFoundError):
        ParquetVideos(str(store_dir), "synthetic", split=None)
    # Whatever files it did write are not a version: a later ingestion starts a fresh one.
    result = _ingest_synth(synth_raw, store_dir)
    assert result.created and store.list_versions(collection) == [result.version]


def test_a_loader_interrupted_mid_way_leaves_the_previous_version_alone(synth_raw, tmp_path):
    store_dir = tmp_path / "store"
    collection = store.datasets_collection(str(store_dir), "synthetic")
    first = _ingest_synth(synth_raw, store_dir)

    changed = tmp_path / "raw-changed"  # different content, so the second ingestion would be new
    shutil.copytree(synth_raw, changed)
    next(changed.glob("*/*/*/000000.jpg")).write_bytes(_jpeg(np.zeros((SYN.frame_size, SYN.frame_size, 3), np.uint8)))
    items = list(read_generic(str(changed)))
    calls = []

    def interrupt():
        calls.append(1)
        raise KeyboardInterrupt

    items[len(items) // 2] = dataclasses.replace(items[len(items) // 2], load_frames=interrupt)
    with pytest.raises(KeyboardInterrupt):
        _ingest(items, store_dir, dataset="synthetic", frame_size=SYN.frame_size)
    assert calls
    assert store.list_versions(collection) == [first.version]
    assert store.read_manifest(collection)["content_hash"] == first.manifest["content_hash"]
    assert ParquetVideos(str(store_dir), "synthetic", split=None).version == first.version


# ----------------------------------------------------------------------------- bad input (generic)


def _good(root: Path) -> set[str]:
    _generic_video(root, "train", "act", "g1", 4, [0, 0, 1, 1], seed=1)
    _generic_video(root, "train", "act", "g2", 3, [0, 1, 2], seed=2)
    return {"g1", "g2"}


def _case_corrupt_jpeg(root: Path):
    good = _good(root)
    folder = _generic_video(root, "train", "act", "bad", 4, [0, 1, 1, 2], seed=3)
    frame = folder / "000002.jpg"
    frame.write_bytes(frame.read_bytes()[: len(frame.read_bytes()) // 2])  # truncated JPEG
    return good, frame, (), {}


def _case_empty_folder(root: Path):
    good = _good(root)
    folder = root / "train" / "act" / "bad"
    folder.mkdir()
    np.save(root / "train" / "act" / "bad.npy", np.zeros(0, np.int64))
    return good, folder, ("empty", "no frame"), {}


def _case_missing_labels(root: Path):
    good = _good(root)
    folder = _generic_video(root, "train", "act", "bad", 4, None, seed=3)
    return good, folder, ("label",), {}


def _case_label_too_large(root: Path):
    good = _good(root)
    folder = _generic_video(root, "train", "act", "bad", 4, [0, 1, 3, 2], seed=3)
    return good, folder, ("range",), {"max_label": 3}


def _case_label_past_a_gap(root: Path):
    # No --max-label: the class's phases are 0, 1, 2 in every other video; a 99 is a mistake.
    good = _good(root)
    folder = _generic_video(root, "train", "act", "bad", 4, [0, 1, 99, 2], seed=3)
    return good, folder, ("label 99 of frame 2 is past phases 3-98, which no video of 'act' has",), {}


def _case_label_negative(root: Path):
    good = _good(root)
    folder = _generic_video(root, "train", "act", "bad", 4, [0, -2, 1, 2], seed=3)
    return good, folder, ("range",), {}


def _case_count_mismatch(root: Path):
    good = _good(root)
    folder = _generic_video(root, "train", "act", "bad", 5, [0, 0, 1, 1], seed=3)
    return good, folder, ("4", "5"), {}


BAD_CASES = {
    "corrupt_jpeg": _case_corrupt_jpeg,
    "empty_folder": _case_empty_folder,
    "missing_labels": _case_missing_labels,
    "label_too_large": _case_label_too_large,
    "label_negative": _case_label_negative,
    "label_past_a_gap": _case_label_past_a_gap,
    "count_mismatch": _case_count_mismatch,
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_skipped_and_reported_with_its_file(tmp_path, case):
    good, bad_file, words, kwargs = BAD_CASES[case](tmp_path / "src")
    result = _ingest(read_generic(str(tmp_path / "src")), tmp_path / "store", **kwargs)
    rows = _rows(tmp_path / "store", "demo", result.version)
    assert {vid for _, _, vid in rows} == good  # every good video, and the bad one not
    assert result.manifest["counts"]["act"]["train"]["videos"] == len(good)
    skipped = result.manifest["skipped"]
    assert len(skipped) == 1, skipped  # nothing silently dropped, nothing reported twice
    (entry,) = skipped
    assert entry["video_id"] == "bad" and entry["action"] == "act" and entry["split"] == "train"
    assert str(bad_file) in entry["file"]
    reason = entry["reason"].lower()
    if case == "count_mismatch":
        assert re.search(r"\b4\b", reason) and re.search(r"\b5\b", reason), reason
    elif words:
        assert any(w in reason for w in words), reason
    assert reason


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_is_fatal_in_strict_mode(tmp_path, case):
    _, bad_file, _, kwargs = BAD_CASES[case](tmp_path / "src")
    with pytest.raises(IngestError) as info:
        _ingest(read_generic(str(tmp_path / "src")), tmp_path / "store", strict=True, **kwargs)
    assert str(bad_file) in str(info.value)
    assert store.list_versions(store.datasets_collection(str(tmp_path / "store"), "demo")) == []


def test_a_duplicate_video_id_is_reported_with_both_files(tmp_path):
    root = tmp_path / "src"
    first = _generic_video(root, "train", "a", "dup", 3, [0, 1, 1], seed=1)
    second = _generic_video(root, "train", "b", "dup", 4, [0, 0, 1, 1], seed=2)
    _generic_video(root, "train", "b", "other", 3, [0, 1, 2], seed=3)
    result = _ingest(read_generic(str(root)), tmp_path / "store")
    rows = _rows(tmp_path / "store", "demo", result.version)
    kept = [key for key in rows if key[2] == "dup"]
    assert len(kept) == 1  # one of the two, never both
    assert ("b", "train", "other") in rows
    (entry,) = result.manifest["skipped"]
    assert entry["video_id"] == "dup" and "duplicate" in entry["reason"].lower()
    kept_folder, dropped_folder = (first, second) if kept[0][0] == "a" else (second, first)
    assert str(dropped_folder) in entry["file"] and entry["action"] == dropped_folder.parent.name
    assert str(kept_folder) in entry["reason"]  # says where the other one is
    with pytest.raises(IngestError) as info:
        _ingest(read_generic(str(root)), tmp_path / "strict", strict=True)
    assert str(dropped_folder) in str(info.value)


def test_nothing_usable_is_an_error_and_no_version(tmp_path):
    root = tmp_path / "src"
    folder = _generic_video(root, "train", "act", "only", 3, [0, 1, 7])
    with pytest.raises(IngestError) as info:
        _ingest(read_generic(str(root)), tmp_path / "store", max_label=3)
    assert str(folder) in str(info.value)
    assert store.list_versions(store.datasets_collection(str(tmp_path / "store"), "demo")) == []


def test_generic_csv_labels_and_unlabelled_videos(tmp_path):
    root = tmp_path / "src"
    frames = _frame_folder(root / "train" / "act" / "v1", 4, seed=5)
    (root / "train" / "act" / "v1.csv").write_text("label\n0\n1\n1\n2\n")
    _frame_folder(root / "val" / "free" / "u1", 3, seed=6)  # a folder without any labels
    result = _ingest(read_generic(str(root)), tmp_path / "store")
    assert result.manifest["skipped"] == []
    labelled = ParquetVideos(str(tmp_path / "store"), "demo", action="act", split="train")
    assert np.array_equal(labelled.labels(0), [0, 1, 1, 2])
    assert np.array_equal(_all_frames(labelled, 0), np.stack([_decode(p) for p in frames]))
    unlabelled = ParquetVideos(str(tmp_path / "store"), "demo", action="free", split="val")
    assert unlabelled.labels(0) is None and unlabelled.num_frames(0) == 3


def test_frames_of_another_size_are_resized_to_frame_size(tmp_path):
    root = tmp_path / "src"
    folder = root / "train" / "act" / "v"
    folder.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((20, 40, 3), 40 * i + 30, np.uint8)).save(folder / f"{i:03d}.png")
    result = _ingest(read_generic(str(root)), tmp_path / "store", frame_size=10)
    source = ParquetVideos(str(tmp_path / "store"), "demo", action="act")
    frames = _all_frames(source, 0)
    assert frames.shape == (3, 10, 20, 3)  # shorter side 10, aspect kept
    for i in range(3):
        assert np.abs(frames[i].astype(int) - (40 * i + 30)).max() <= 3
    assert result.manifest["frame_size"] == 10


# ----------------------------------------------------------------------------- Penn Action


def _nearest(n_from: int, n_to: int) -> list[int]:
    """METHOD.md §6 by definition: item j of the n_to kept is the source item nearest to position
    j (n_from - 1) / (n_to - 1), first to first and last to last (no ties in the cases used)."""
    return [math.floor(j * (n_from - 1) / (n_to - 1) + 0.5) for j in range(n_to)]


def _penn_video(
    src: Path,
    phase: Path,
    video_id: str,
    n_frames: int,
    labels,
    folder_action: str,
    split: str,
    mat_action: str | None = "same",
):
    paths = _frame_folder(src / "frames" / video_id, n_frames, seed=int(video_id), first=1)  # 000001.jpg …
    if mat_action is not None:
        action = folder_action if mat_action == "same" else mat_action
        (src / "labels").mkdir(parents=True, exist_ok=True)
        scipy.io.savemat(src / "labels" / f"{video_id}.mat", {"action": action, "nframes": n_frames, "pose": "front"})
    (phase / split / folder_action).mkdir(parents=True, exist_ok=True)
    np.save(phase / split / folder_action / f"{video_id}.npy", np.asarray(labels, np.int64))
    return paths


@pytest.fixture
def penn(tmp_path):
    src, phase = tmp_path / "penn", tmp_path / "phase_labels"
    frames = {
        "0001": _penn_video(src, phase, "0001", 6, [0, 0, 1, 1, 2, 2], "baseball_pitch", "train"),
        "0002": _penn_video(src, phase, "0002", 5, [0, 1, 1, 2, 2], "baseball_pitch", "val"),
        # 11 frames, 4 labels: frames resampled; 4 frames, 9 labels: labels resampled.
        "0003": _penn_video(src, phase, "0003", 11, [0, 1, 2, 3], "tennis_serve", "train"),
        "0004": _penn_video(src, phase, "0004", 4, [0, 0, 1, 1, 2, 2, 3, 3, 3], "tennis_serve", "train"),
        "0005": _penn_video(src, phase, "0005", 4, [0, 1, 1, 2], "strum_guitar", "train"),
        "0006": _penn_video(src, phase, "0006", 4, [0, 1, 1, 2], "jump_rope", "val"),
        "0007": _penn_video(src, phase, "0007", 4, [0, 1, 1, 2], "bowl", "train", mat_action="golf_swing"),
        "0008": _penn_video(src, phase, "0008", 4, [0, 1, 1, 2], "bowl", "train", mat_action=None),
    }
    return src, phase, frames


def test_pennaction_layout(tmp_path, penn):
    src, phase, frames = penn
    result = _ingest(read_pennaction(str(src), str(phase)), tmp_path / "store", dataset="pennaction")
    m = result.manifest
    assert {a: sorted(s) for a, s in m["counts"].items()} == {"baseball_pitch": ["train", "val"], "tennis_serve": ["train"]}
    assert m["counts"]["baseball_pitch"]["train"] == {"videos": 1, "frames": 6}
    assert m["counts"]["baseball_pitch"]["val"] == {"videos": 1, "frames": 5}
    assert m["counts"]["tennis_serve"]["train"] == {"videos": 2, "frames": 4 + 4}

    skipped = {e["video_id"]: e for e in m["skipped"]}
    assert sorted(skipped) == ["0005", "0006", "0007", "0008"]
    for vid in ("0005", "0006"):
        assert vid in skipped[vid]["file"] and skipped[vid]["reason"]
    assert skipped["0005"]["action"] == "strum_guitar" and skipped["0006"]["action"] == "jump_rope"
    assert skipped["0007"]["file"].endswith(str(src / "labels" / "0007.mat"))
    assert "golf_swing" in skipped["0007"]["reason"] and "bowl" in skipped["0007"]["reason"]
    assert skipped["0008"]["file"].endswith(str(src / "labels" / "0008.mat"))
    assert "missing" in skipped["0008"]["reason"].lower()

    # Exact frames and labels, the mismatched ones resampled by nearest index.
    pitch = ParquetVideos(str(tmp_path / "store"), "pennaction", action="baseball_pitch", split="train")
    assert [pitch.video_id(0)] == ["0001"]
    assert np.array_equal(_all_frames(pitch, 0), np.stack([_decode(p) for p in frames["0001"]]))
    assert np.array_equal(pitch.labels(0), [0, 0, 1, 1, 2, 2])

    tennis = ParquetVideos(str(tmp_path / "store"), "pennaction", action="tennis_serve", split="train")
    index = {tennis.video_id(i): i for i in range(len(tennis))}
    assert sorted(index) == ["0003", "0004"]
    kept = _nearest(11, 4)
    assert kept == [0, 3, 7, 10]
    i = index["0003"]
    assert np.array_equal(_all_frames(tennis, i), np.stack([_decode(frames["0003"][k]) for k in kept]))
    assert np.array_equal(tennis.labels(i), [0, 1, 2, 3])
    i = index["0004"]
    assert np.array_equal(_all_frames(tennis, i), np.stack([_decode(p) for p in frames["0004"]]))
    assert _nearest(9, 4) == [0, 3, 5, 8]
    assert np.array_equal(tennis.labels(i), np.array([0, 0, 1, 1, 2, 2, 3, 3, 3])[_nearest(9, 4)])

    # Each resampling is reported as a note naming the video; nothing else is.
    noted = sorted(n["video_id"] for n in m["notes"])
    assert noted == ["0003", "0004"]
    for note in m["notes"]:
        assert note["video_id"] in note["file"] and note["message"]


def test_pennaction_resampling_is_not_an_error_in_strict_mode(tmp_path):
    src, phase = tmp_path / "penn", tmp_path / "phase"
    _penn_video(src, phase, "0011", 11, [0, 1, 2, 3], "squat", "train")
    result = _ingest(read_pennaction(str(src), str(phase)), tmp_path / "store", dataset="pennaction", strict=True)
    assert result.manifest["counts"]["squat"]["train"] == {"videos": 1, "frames": 4}
    assert len(result.manifest["notes"]) == 1


def test_pennaction_strict_fails_on_a_missing_mat(tmp_path):
    src, phase = tmp_path / "penn", tmp_path / "phase"
    _penn_video(src, phase, "0021", 4, [0, 1, 1, 2], "squat", "train")
    _penn_video(src, phase, "0022", 4, [0, 1, 1, 2], "squat", "train", mat_action=None)
    with pytest.raises(IngestError) as info:
        _ingest(read_pennaction(str(src), str(phase)), tmp_path / "store", dataset="pennaction", strict=True)
    assert str(src / "labels" / "0022.mat") in str(info.value)


# ----------------------------------------------------------------------------- Pouring


def _pouring_records(names_lengths, seed: int) -> list[tuple[dict, dict, list[bytes], np.ndarray]]:
    out = []
    for k, (name, n) in enumerate(names_lengths):
        jpegs = [_jpeg(_frame(i, seed * 100 + k)) for i in range(n)]
        labels = np.minimum(np.arange(n) * POURING_PHASES // n, POURING_PHASES - 1)
        context = {"name": (name.encode(), "byte"), "len": (n, "int"), "label": (k % 2, "int")}
        sequence = {"video": (jpegs, "byte"), "frame_labels": ([[int(x)] for x in labels], "int")}
        out.append((context, sequence, jpegs, labels))
    return out


def _write_tfrecord(path: Path, records) -> list[int]:
    """Write the records; returns the byte offset of each."""
    writer = TFRecordWriter(str(path))
    offsets, offset = [], 0
    for context, sequence, _, _ in records:
        writer.write(context, sequence)
        offsets.append(offset)
        offset += 16 + len(TFRecordWriter.serialize_tf_sequence_example(context, sequence))
    writer.close()
    return offsets


def test_pouring_round_trip(tmp_path):
    src = tmp_path / "pouring"
    src.mkdir()
    train = _pouring_records([("pour_001", 5), ("pour_002", 7), ("pour_003", 4)], seed=1)
    val = _pouring_records([("pour_101", 6)], seed=2)
    _write_tfrecord(src / "pouring_train.tfrecord", train)
    _write_tfrecord(src / "pouring_val.tfrecord", val)
    result = _ingest(read_pouring(str(src)), tmp_path / "store", dataset="pouring", max_label=POURING_PHASES)
    assert result.manifest["skipped"] == []
    for split, records in (("train", train), ("val", val)):
        source = ParquetVideos(str(tmp_path / "store"), "pouring", action="pouring", split=split)
        index = {source.video_id(i): i for i in range(len(source))}
        assert sorted(index) == sorted(c["name"][0].decode() for c, _, _, _ in records)
        for context, _, jpegs, labels in records:
            i = index[context["name"][0].decode()]
            assert np.array_equal(source.labels(i), labels)
            assert np.array_equal(_all_frames(source, i), np.stack([_decode(j) for j in jpegs]))
        assert result.manifest["counts"]["pouring"][split]["frames"] == sum(len(j) for _, _, j, _ in records)


def test_pouring_corrupt_record_keeps_the_ones_before_it(tmp_path):
    src = tmp_path / "pouring"
    src.mkdir()
    train = _pouring_records([("pour_001", 5), ("pour_002", 6), ("pour_003", 4)], seed=1)
    path = src / "pouring_train.tfrecord"
    offsets = _write_tfrecord(path, train)
    _write_tfrecord(src / "pouring_val.tfrecord", _pouring_records([("pour_101", 3)], seed=2))
    raw = bytearray(path.read_bytes())
    raw[offsets[1] + 40] ^= 0x55  # inside the data of the second record
    path.write_bytes(bytes(raw))

    result = _ingest(read_pouring(str(src)), tmp_path / "store", dataset="pouring", max_label=POURING_PHASES)
    rows = _rows(tmp_path / "store", "pouring", result.version)
    assert {vid for _, _, vid in rows} == {"pour_001", "pour_101"}
    source = ParquetVideos(str(tmp_path / "store"), "pouring", action="pouring", split="train")
    assert len(source) == 1 and source.video_id(0) == "pour_001"
    assert np.array_equal(_all_frames(source, 0), np.stack([_decode(j) for j in train[0][2]]))
    reports = [e for e in result.manifest["skipped"] if "pouring_train.tfrecord" in e["file"]]
    assert reports, result.manifest["skipped"]
    # The report says where in the file the damage is: the second record's byte offset.
    assert any(re.search(rf"\b{offsets[1]}\b", e["reason"].replace(e["file"], "")) for e in reports), reports

    with pytest.raises(IngestError) as info:
        _ingest(read_pouring(str(src)), tmp_path / "strict", dataset="pouring", strict=True)
    assert "pouring_train.tfrecord" in str(info.value)


# ----------------------------------------------------------------------------- video files


def test_generic_video_file_is_decoded(tmp_path):
    av = pytest.importorskip("av")
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128), (255, 255, 0)] * 2
    folder = tmp_path / "src" / "train" / "act"
    folder.mkdir(parents=True)
    with av.open(str(folder / "clip.mp4"), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.options = {"qscale": "2"}
        for colour in colours:
            frame = np.empty((32, 32, 3), np.uint8)
            frame[:] = colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    labels = np.repeat(np.arange(5), 2)
    np.save(folder / "clip.npy", labels)

    result = _ingest(read_generic(str(tmp_path / "src")), tmp_path / "store", frame_size=32)
    assert result.manifest["skipped"] == []
    source = ParquetVideos(str(tmp_path / "store"), "demo", action="act")
    assert source.video_id(0) == "clip" and source.num_frames(0) == len(colours)
    assert np.array_equal(source.labels(0), labels)
    frames = _all_frames(source, 0)
    assert frames.shape == (len(colours), 32, 32, 3)
    means = frames.reshape(len(colours), -1, 3).mean(axis=1)
    assert np.abs(means - np.array(colours)).max() < 20  # lossy codec, twice


def test_an_unreadable_video_file_is_reported(tmp_path):
    folder = tmp_path / "src" / "train" / "act"
    folder.mkdir(parents=True)
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 10)
    np.save(folder / "broken.npy", np.zeros(3, np.int64))
    _generic_video(tmp_path / "src", "train", "act", "ok", 3, [0, 1, 2])
    result = _ingest(read_generic(str(tmp_path / "src")), tmp_path / "store")
    (entry,) = result.manifest["skipped"]
    assert entry["video_id"] == "broken" and str(folder / "broken.mp4") in entry["file"]


def test_every_file_beside_the_videos_is_ingested_or_reported(tmp_path):
    """Issue 14: a file of an unknown type, a label file without its video and a second video
    file of a taken name were dropped without a word."""
    src = tmp_path / "src"
    _generic_video(src, "train", "act", "ok", 3, [0, 1, 2])
    folder = src / "train" / "act"
    (folder / "notes.txt").write_text("not a video")
    np.save(folder / "orphan.npy", np.zeros(3, np.int64))
    (folder / "ok.mp4").write_bytes(b"a second source for 'ok'")
    (folder / ".DS_Store").write_bytes(b"")  # hidden: not reported
    (folder / "ok" / "thumbs.db").write_bytes(b"inside the frame folder")
    (folder / "ok" / "extra").mkdir()
    (folder / "ok" / ".hidden").write_bytes(b"")
    result = _ingest(read_generic(str(src)), tmp_path / "store")
    reasons = {(p["video_id"], p["reason"].split(";")[0].split(" (")[0]) for p in result.manifest["skipped"]}
    assert reasons == {
        ("notes", "unsupported file type '.txt'"),
        ("orphan", "label file orphan.npy has no video orphan beside it"),
        ("ok", "ok.mp4 is not read: ok is video ok"),
        ("ok", "ok/thumbs.db is not read: not an image"),
        ("ok", "ok/extra is not read: a folder"),
    }
    assert result.manifest["counts"]["act"]["train"]["videos"] == 1  # the video itself is ingested
    with pytest.raises(IngestError, match="notes.txt"):
        _ingest(read_generic(str(src)), tmp_path / "store2", strict=True)


def test_the_synthetic_set_is_stored_at_ingest_frame_size_when_it_is_set(tmp_path):
    """ingest.frame_size means the stored frames' size for every kind (issue 13); unset, the
    synthetic set keeps the size it is generated at."""
    from lrprop.config import config_from_dict
    from lrprop.ingest.synthetic import ensure_synthetic_dataset

    synthetic = {"num_actions": 1, "train_videos": 1, "val_videos": 0, "frame_size": 32, "length_range": [20, 22]}
    for frame_size, stored in ((None, 32), (16, 16)):
        config = config_from_dict({"synthetic": synthetic, "ingest": {"frame_size": frame_size, "threads": 2}})
        root = str(tmp_path / f"store-{frame_size}")
        version = ensure_synthetic_dataset(config, root, progress=False)
        manifest = store.read_manifest(store.datasets_collection(root, "synthetic"), version)
        source = ParquetVideos(root, "synthetic", version=version, split="train")
        assert manifest["frame_size"] == stored and source.read_frames(0, np.arange(1)).shape[1:3] == (stored, stored)


# ----------------------------------------------------------------------------- CLI


def test_cli_synth_ingest_and_list(tmp_path, capsys):
    raw, store_dir = tmp_path / "raw", tmp_path / "store"
    sets = ["synthetic.train_videos=2", "synthetic.val_videos=1", "synthetic.frame_size=32", "synthetic.length_range=[20,30]"]
    sets += ["ingest.threads=2"]
    argv_sets = [x for s in sets for x in ("--set", s)]
    assert main(["synth", "--dest", str(raw), *argv_sets]) == 0
    written = _source_videos(raw)
    assert len(written) == 2 * (2 + 1)  # two classes by default
    capsys.readouterr()

    assert main(["ingest", "synthetic", "--src", str(raw), "--store", str(store_dir), "--frame-size", "32", *argv_sets]) == 0
    out = capsys.readouterr().out
    collection = store.datasets_collection(str(store_dir), "synthetic")
    (version,) = store.list_versions(collection)
    assert version in out
    manifest = store.read_manifest(collection)
    assert sum(c["videos"] for s in manifest["counts"].values() for c in s.values()) == len(written)

    assert main(["datasets", "list", "--store", str(store_dir)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    mine = [ln for ln in lines if ln.split()[0] == "synthetic"]
    assert len(mine) == 1 and version in mine[0]
    assert len(lines) == 2  # a header and the one data set

    # The store's old flag (--dest, issue 13) still ingests, says its new name, and makes no new
    # version of unchanged data; given beside --store it is refused.
    assert main(["ingest", "synthetic", "--src", str(raw), "--dest", str(store_dir), "--frame-size", "32", *argv_sets]) == 0
    captured = capsys.readouterr()
    assert "--dest is now --store" in captured.err and "unchanged: existing version" in captured.out
    assert store.list_versions(collection) == [version]
    with pytest.raises(SystemExit, match="give the store once"):
        main(["ingest", "synthetic", "--src", str(raw), "--dest", str(store_dir), "--store", str(store_dir)])


def test_cli_ingest_reads_the_old_labels_flag_and_says_its_new_name(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    code = main(["ingest", "generic", "--src", str(missing), "--store", str(tmp_path / "s"), "--labels", str(tmp_path)])
    err = capsys.readouterr().err
    assert "--labels is now --labels-dir" in err and code == 2 and str(missing) in err
    with pytest.raises(SystemExit, match="give the label folder once"):
        main(["ingest", "generic", "--src", str(missing), "--labels", "a", "--labels-dir", "b"])


def test_cli_ingest_missing_src_is_an_error_naming_it(tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    code = main(["ingest", "generic", "--src", str(missing), "--store", str(tmp_path / "store")])
    assert code == 2
    assert str(missing) in capsys.readouterr().err
    assert (
        not (tmp_path / "store" / "datasets").exists()
        or store.list_versions(store.datasets_collection(str(tmp_path / "store"), "generic")) == []
    )


# ----------------------------------------------------------------------------- the trainer


TINY = tiny(optim={"epochs": 1})


def test_parquet_videos_feed_the_trainer(synth_raw, tmp_path):
    from lrprop.data.source import VideoSource
    from lrprop.training.train import train

    result = _ingest_synth(synth_raw, tmp_path / "store")
    action = sorted(result.manifest["counts"])[0]
    source = ParquetVideos(str(tmp_path / "store"), "synthetic", action=action, split="train")
    assert isinstance(source, VideoSource)
    trained = train(config_from_dict(json.loads(json.dumps(TINY))), source, checkpoint_dir=tmp_path / "ckpt")
    assert len(trained.history) == 1 and trained.step >= 1
    assert all(math.isfinite(v) for k, v in trained.history[0].items() if k.startswith("loss_"))


def test_reingesting_unchanged_content_still_reports_what_this_run_skipped(tmp_path):
    root = tmp_path / "src"
    _good(root)
    first = _ingest(read_generic(str(root)), tmp_path / "store")
    bad = _generic_video(root, "train", "act", "bad", 3, [0, 1, 1], seed=9)
    (bad / "000001.jpg").write_bytes(b"\xff\xd8garbage")
    again = _ingest(read_generic(str(root)), tmp_path / "store")
    assert not again.created and again.version == first.version
    assert [(p["video_id"], p["file"].endswith(str(bad / "000001.jpg"))) for p in again.skipped] == [("bad", True)]


def test_a_video_file_with_a_mixed_case_extension_is_found(tmp_path):
    pytest.importorskip("av")
    folder = tmp_path / "src" / "train" / "act"
    folder.mkdir(parents=True)
    (folder / "clip.Mp4").write_bytes(b"not a video")
    np.save(folder / "clip.npy", np.zeros(3, np.int64))
    items = list(read_generic(str(tmp_path / "src")))
    assert [(i.video_id, i.source.endswith("clip.Mp4")) for i in items] == [("clip", True)]


def test_a_folder_name_unfit_for_a_path_is_skipped_not_fatal(tmp_path):
    root = tmp_path / "src"
    good = _good(root)
    _generic_video(root, "train", "golf swing", "s1", 3, [0, 1, 2], seed=5)
    result = _ingest(read_generic(str(root)), tmp_path / "store")
    assert {p["video_id"]: "invalid action name" in p["reason"] for p in result.skipped} == {"s1": True}
    assert set(ParquetVideos(str(tmp_path / "store"), "demo", action="act").video_id(i) for i in range(2)) == good
    with pytest.raises(IngestError, match="golf swing"):
        _ingest(read_generic(str(root)), tmp_path / "store2", strict=True)


def test_parquet_source_works_in_dataloader_worker_processes(synth_raw, tmp_path):
    """Views read from Parquet in 2 worker processes equal those read in this process."""
    from lrprop.data.views import EpochBatchSampler, ViewDataset

    _ingest_synth(synth_raw, tmp_path / "store")
    source = ParquetVideos(str(tmp_path / "store"), "synthetic", action=store_actions(tmp_path / "store")[0])
    dataset = ViewDataset(source, 8, num_views=2, transform=None, seed=3)
    sampler = EpochBatchSampler(len(source), 2, seed=3)
    inline = list(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=0))
    workers = list(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=2))
    assert len(inline) == len(workers) > 0
    for a, b in zip(inline, workers):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["timestamps"], b["timestamps"])


def store_actions(store_root) -> list[str]:
    manifest = store.read_manifest(store.datasets_collection(str(store_root), "synthetic"))
    return sorted(manifest["counts"])


def _train_file(store_root: Path, action: str) -> Path:
    (path,) = (store_root / "datasets" / "synthetic").glob(f"*/action={action}/split=train/*.parquet")
    return path


def test_a_damaged_parquet_file_is_an_error_naming_it_that_no_retry_would_fix(synth_raw, tmp_path):
    from lrprop.failures import kind_of

    root = tmp_path / "store"
    _ingest_synth(synth_raw, root)
    action = store_actions(root)[0]
    path = _train_file(root, action)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut short: no Parquet footer
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: not a readable Parquet file") as caught:
        ParquetVideos(str(root), "synthetic", action=action, split="train")
    assert kind_of(caught.value) == "permanent"


def test_a_frame_that_is_not_a_jpeg_is_an_error_naming_the_video_and_the_frame(synth_raw, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "store"
    _ingest_synth(synth_raw, root)
    action = store_actions(root)[0]
    path = _train_file(root, action)
    # Rewrite the file, one row group per video as the writer makes them, with frame 2 of the
    # first video's bytes replaced.
    parquet = pq.ParquetFile(path)
    groups = [parquet.read_row_group(rg) for rg in range(parquet.num_row_groups)]
    first = groups[0].to_pydict()
    first["jpeg"][2] = b"not a jpeg"
    groups[0] = pa.Table.from_pydict(first, schema=groups[0].schema)
    with pq.ParquetWriter(path, groups[0].schema) as writer:
        for table in groups:
            writer.write_table(table)
    source = ParquetVideos(str(root), "synthetic", action=action, split="train")
    index = next(i for i in range(len(source)) if source.video_id(i) == first["video_id"][0])
    assert source.read_frames(index, np.array([0, 1])).shape[0] == 2  # the frames around it still read
    with pytest.raises(ValueError, match=rf"frame 2 of video '{re.escape(first['video_id'][0])}' is not a readable JPEG"):
        source.read_frames(index, np.array([1, 2]))


def test_a_phase_no_video_has_is_accepted_when_max_label_declares_it(tmp_path):
    root = tmp_path / "src"
    good = _good(root)
    _generic_video(root, "train", "act", "with4", 4, [0, 1, 4, 2], seed=3)  # phase 3 in no video
    skipped = _ingest(read_generic(str(root)), tmp_path / "store")
    assert [e["video_id"] for e in skipped.manifest["skipped"]] == ["with4"]
    assert "past phase 3, which no video" in skipped.manifest["skipped"][0]["reason"]
    assert skipped.manifest["num_phases"]["act"] == 3
    declared = _ingest(read_generic(str(root)), tmp_path / "store", max_label=5)
    assert declared.manifest["skipped"] == [] and declared.manifest["num_phases"]["act"] == 5
    assert {vid for _, _, vid in _rows(tmp_path / "store", "demo", declared.version)} == good | {"with4"}
