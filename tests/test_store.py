"""Tests of lrprop/store.py: version ids, the manifest-last visibility rule, atomic writes.

Oracles: the order of the instants the ids were made for (compared as real instants, whatever
the time zone they were given in), folders laid out by hand in the state a crashed writer leaves,
and directory listings made with os / fsspec directly.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta, timezone

import fsspec
import pytest

from lrprop import store

# ----------------------------------------------------------------------------- version ids


def test_version_ids_sort_in_the_order_of_their_instants():
    base = datetime(2026, 12, 31, 23, 59, 59, 999_990, tzinfo=UTC)
    # Steps of one microsecond up to days, crossing a second, a minute, a day and a year.
    steps = [timedelta(microseconds=1), timedelta(microseconds=9), timedelta(seconds=1), timedelta(minutes=3), timedelta(days=40)]
    instants = [base]
    for step in steps * 3:
        instants.append(instants[-1] + step)
    ids = [store.new_version_id(t) for t in instants]
    assert sorted(ids) == ids
    assert len(set(ids)) == len(ids)
    for version in ids:
        assert store.check_version(version) == version


def test_version_ids_sort_by_the_real_instant_across_time_zones():
    # 10:00 at UTC+2 is 08:00 UTC, earlier than 09:00 UTC although its wall clock is later.
    early = datetime(2026, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    late = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)
    assert early < late
    assert store.new_version_id(early) < store.new_version_id(late)


def test_two_ids_for_the_same_instant_differ():
    now = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
    ids = {store.new_version_id(now) for _ in range(50)}
    assert len(ids) == 50
    # Without an explicit instant too (two writers starting at once).
    assert store.new_version_id() != store.new_version_id()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../x",
        "v1/..",
        "..",
        "/v20260101T000000000000Z-1a2b3c4d",
        "v20260101T000000000000Z-1a2b3c4d/..",
        "v20260101T000000000000Z-1a2b3c4d/../../etc",
        "../v20260101T000000000000Z-1a2b3c4d",
        "v20260101T000000000000Z-1a2b3c4d\n",  # '$' alone would accept the newline
        "latest",
        None,
    ],
)
def test_check_version_rejects_path_like_or_malformed_strings(bad):
    with pytest.raises(ValueError) as info:
        store.check_version(bad)
    assert repr(bad) in str(info.value)


# ----------------------------------------------------------------------------- listing versions


@pytest.fixture(params=["local", "memory"])
def collection(request, tmp_path, memory_root):
    if request.param == "local":
        return str(tmp_path / "datasets" / "demo")
    return store.join(memory_root, "datasets", "demo")


def _put(uri: str, data: bytes) -> None:
    """Write a file with fsspec directly, not through the module under test."""
    fs, path = store.filesystem(uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as handle:
        handle.write(data)


def _ids(n: int) -> list[str]:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    return [store.new_version_id(t0 + timedelta(seconds=10 * k)) for k in range(n)]


def test_list_versions_lists_only_versions_with_a_manifest_oldest_first(collection):
    v0, v1, v2, v3 = _ids(4)
    # Written out of order; v1 and v3 are what a crashed writer leaves: data, no manifest.
    for version in (v2, v0):
        _put(store.join(collection, version, "part-0.parquet"), b"data")
        _put(store.join(collection, version, store.MANIFEST), json.dumps({"version": version}).encode())
    for version in (v3, v1):
        _put(store.join(collection, version, "part-0.parquet"), b"half")
    # Things that are not versions at all, even with a manifest.
    _put(store.join(collection, "notaversion", store.MANIFEST), b"{}")
    _put(store.join(collection, "README.txt"), b"hello")

    assert store.list_versions(collection) == [v0, v2]
    assert store.latest_version(collection) == v2  # v3 is newer but incomplete


def test_a_missing_or_empty_collection_has_no_versions(collection):
    assert store.list_versions(collection) == []
    assert store.latest_version(collection) is None
    with pytest.raises(FileNotFoundError):
        store.read_manifest(collection)
    _put(store.join(collection, _ids(1)[0], "part-0.parquet"), b"half")  # only a crashed writer
    assert store.list_versions(collection) == []
    assert store.latest_version(collection) is None


def test_read_manifest_defaults_to_the_latest_version(collection):
    versions = _ids(3)
    for k, version in enumerate(versions):
        store.write_manifest(collection, version, {"version": version, "k": k})
    assert store.list_versions(collection) == versions
    assert store.latest_version(collection) == versions[-1]
    assert store.read_manifest(collection) == {"version": versions[-1], "k": 2}
    assert store.read_manifest(collection, versions[0]) == {"version": versions[0], "k": 0}
    # The manifest is plain JSON at <collection>/<version>/_manifest.json.
    fs, path = store.filesystem(store.join(collection, versions[1], store.MANIFEST))
    assert json.loads(fs.cat_file(path)) == {"version": versions[1], "k": 1}


def test_read_manifest_of_a_missing_version_names_it(collection):
    present, missing, crashed = _ids(3)
    store.write_manifest(collection, present, {"version": present})
    _put(store.join(collection, crashed, "part-0.parquet"), b"half")
    for version in (missing, crashed):
        with pytest.raises(FileNotFoundError) as info:
            store.read_manifest(collection, version)
        assert version in str(info.value)


def test_read_manifest_rejects_a_path_like_version(collection):
    store.write_manifest(collection, _ids(1)[0], {})
    with pytest.raises(ValueError):
        store.read_manifest(collection, "../other")


# ----------------------------------------------------------------------------- atomic writes


def test_write_bytes_local_leaves_only_the_whole_file(tmp_path):
    target = tmp_path / "sub" / "dir" / "file.bin"  # parents are created
    store.write_bytes(str(target), b"first version")
    assert target.read_bytes() == b"first version"
    store.write_bytes(str(target), b"second")  # a shorter file replaces a longer one whole
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["file.bin"]  # no .tmp-* sibling left behind
    assert store.read_bytes(str(target)) == b"second"


def test_write_bytes_local_failure_keeps_the_old_file_whole(tmp_path, monkeypatch):
    """A write that dies half way (disk full) must not leave a partial file at the target."""
    from fsspec.implementations.local import LocalFileOpener

    target = tmp_path / "manifest.json"
    target.write_bytes(b"old content, complete")
    real_write = LocalFileOpener.write

    def half_then_fail(self, data, *args, **kwargs):
        data = bytes(data)
        real_write(self, data[: len(data) // 2])
        self.flush()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalFileOpener, "write", half_then_fail)
    with pytest.raises(OSError):
        store.write_bytes(str(target), b"new content that is longer than the old one")
    monkeypatch.undo()
    assert target.read_bytes() == b"old content, complete"


def test_write_bytes_local_failure_on_a_new_file_leaves_no_target(tmp_path, monkeypatch):
    from fsspec.implementations.local import LocalFileOpener

    target = tmp_path / "v" / store.MANIFEST

    def fail(self, data, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(LocalFileOpener, "write", fail)
    with pytest.raises(OSError):
        store.write_bytes(str(target), b"{}")
    monkeypatch.undo()
    assert not target.exists()  # a manifest that is not whole must not exist at all


def test_write_bytes_memory(memory_root):
    uri = store.join(memory_root, "a", "b", "file.bin")
    store.write_bytes(uri, b"one")
    store.write_bytes(uri, b"two!")
    fs = fsspec.filesystem("memory")
    _, path = store.filesystem(uri)
    assert fs.cat_file(path) == b"two!"
    assert store.read_bytes(uri) == b"two!"
    listed = [p.rsplit("/", 1)[-1] for p in fs.ls(path.rsplit("/", 1)[0], detail=False)]
    assert listed == ["file.bin"]
    assert not [p for p in fs.find(memory_root.removeprefix("memory://")) if "/.tmp-" in p]


def test_write_json_round_trip_and_missing_file_names_it(collection):
    uri = store.join(collection, "x.json")
    value = {"b": [1, 2.5, None], "a": "é"}
    store.write_json(uri, value)
    assert store.read_json(uri) == value
    missing = store.join(collection, "nope.json")
    with pytest.raises(FileNotFoundError) as info:
        store.read_bytes(missing)
    assert "nope.json" in str(info.value)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"secret": "s3cr3t"}, "secret"),
        ({"key": "s3cr3t"}, "key"),
        ({"token": "s3cr3t"}, "token"),
        ({"client_kwargs": {"region_name": "eu-west-1", "aws_secret_access_key": "s3cr3t"}}, "aws_secret_access_key"),
        ({"config_kwargs": {}, "s3_additional_kwargs": {"SSECustomerKey": "s3cr3t"}}, "SSECustomerKey"),
    ],
)
def test_credentials_given_as_storage_options_are_refused_naming_the_option_not_its_value(tmp_path, options, named):
    (tmp_path / "x").write_bytes(b"data")
    for call in (lambda: store.read_bytes(str(tmp_path / "x"), **options), lambda: store.exists(str(tmp_path / "x"), **options)):
        with pytest.raises(ValueError, match=rf"\[{named!r}\]: credentials are read from the environment") as caught:
            call()
        assert "s3cr3t" not in str(caught.value)


def test_storage_options_that_are_not_credentials_reach_the_filesystem(tmp_path):
    fs, _ = store.filesystem(str(tmp_path), auto_mkdir=False)
    assert fs.auto_mkdir is False
    fs, _ = store.filesystem(str(tmp_path), auto_mkdir=True)
    assert fs.auto_mkdir is True


def test_a_local_store_that_cannot_be_written_is_refused_naming_it(tmp_path):
    store.check_store(str(tmp_path / "new" / "store"))  # made on first use
    assert (tmp_path / "new" / "store").is_dir() and not list((tmp_path / "new" / "store").iterdir())  # no probe left
    (tmp_path / "file").write_bytes(b"")
    under_a_file = str(tmp_path / "file" / "store")
    with pytest.raises(store.StoreError, match=rf"^store {re.escape(repr(under_a_file))}: cannot write there"):
        store.check_store(under_a_file)


def test_a_bucket_that_does_not_exist_is_an_error_and_is_not_created(s3_bucket):
    import s3fs

    store.check_store(f"{s3_bucket}/lrprop")  # an existing bucket: fine
    missing = f"lrprop-missing-{os.getpid()}"
    with pytest.raises(store.StoreError, match=rf"bucket '{missing}' does not exist .* never creates buckets"):
        store.check_store(f"s3://{missing}/lrprop")
    assert not s3fs.S3FileSystem(skip_instance_cache=True).exists(missing)


def test_a_store_that_does_not_answer_is_not_taken_for_a_missing_bucket(monkeypatch):
    """s3fs's ``exists`` says False to any error: an outage must stay an outage, which Prefect
    retries, not become "bucket does not exist", which it must not."""
    import socket

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with pytest.raises(Exception) as raised:
        store.check_store("s3://some-bucket/lrprop", skip_instance_cache=True)  # not a cached client of moto
    assert not isinstance(raised.value, store.StoreError)
    assert store.is_transient(raised.value), repr(raised.value)


def test_ingest_into_a_missing_bucket_fails_before_reading_a_video(s3_endpoint):
    from lrprop.ingest.writer import ingest

    def videos():
        raise AssertionError("the reader was started")
        yield

    with pytest.raises(store.StoreError, match="does not exist"):
        ingest(videos(), store_uri="s3://lrprop-no-such-bucket/x", dataset="d", source="test", progress=False)


def _client_error(code: str):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": "..."}}, "PutObject")


def _raised_from(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException as inner:
            raise outer from inner
    except BaseException as exc:  # noqa: BLE001 - the test builds the chain s3fs raises
        return exc


def test_storage_errors_are_transient_by_their_type_along_the_chain_of_causes():
    from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
    from fsspec.exceptions import FSTimeoutError

    from lrprop.config import ConfigError

    transient = [
        EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),  # neither ConnectionError nor OSError
        ReadTimeoutError(endpoint_url="http://127.0.0.1:9"),
        ConnectionResetError(),
        FSTimeoutError(),
        _client_error("SlowDown"),
        _raised_from(OSError(5, "Input/output error"), _client_error("SlowDown")),  # as s3fs translates it
        _raised_from(RuntimeError("task failed"), EndpointConnectionError(endpoint_url="x")),
    ]
    permanent = [
        FileNotFoundError("no file"),
        PermissionError("denied"),
        OSError("throttling in the text is not a throttling error"),
        ValueError("bad input"),
        ConfigError("model.num_heads: must divide"),
        _client_error("NoSuchBucket"),
        _raised_from(OSError(13, "Access Denied"), _client_error("AccessDenied")),
        store.StoreError("bucket does not exist"),
    ]
    assert [store.is_transient(e) for e in transient] == [True] * len(transient)
    assert [store.is_transient(e) for e in permanent] == [False] * len(permanent)


def test_rays_view_of_an_object_store_makes_no_folders_and_so_no_bucket(s3_bucket):
    import pickle

    import pyarrow.fs as pafs
    import s3fs

    path, fs = store.ray_storage(f"{s3_bucket}/lrprop/runs/r1/ray")
    assert path == f"{s3_bucket.removeprefix('s3://')}/lrprop/runs/r1/ray"
    fs = pickle.loads(pickle.dumps(fs))  # as Ray ships it to its controller and workers
    missing = f"lrprop-missing-{os.getpid()}"
    fs.create_dir(f"{missing}/lrprop/runs", recursive=True)
    assert not s3fs.S3FileSystem(skip_instance_cache=True).exists(missing)
    with fs.open_output_stream(f"{path}/checkpoint_0/state.json") as out:  # writes need no folder
        out.write(b"{}")
    assert fs.get_file_info(f"{path}/checkpoint_0").type == pafs.FileType.Directory
