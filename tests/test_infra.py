"""infra/ and flows/: the files parse, point at code that exists, and say what they must."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from lrprop.config import load_config

REPO = Path(__file__).resolve().parents[1]


def _load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prefect_deployments_point_at_flows_with_valid_crons_and_configs():
    from prefect import Flow
    from prefect.client.schemas.schedules import CronSchedule

    spec = yaml.safe_load((REPO / "infra" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"retrain-and-evaluate-nightly", "tune"}
    for deployment in deployments.values():
        file, name = deployment["entrypoint"].split(":")
        flow = getattr(_load_module(REPO / file), name)
        assert isinstance(flow, Flow)
        # The parameters are ones the flow takes, and the config they name loads.
        assert set(deployment["parameters"]) <= set(flow.parameters.properties)
        load_config(REPO / deployment["parameters"]["config_path"])
        assert deployment["work_pool"]["name"] == "lrprop"
    crons = [s["cron"] for s in deployments["retrain-and-evaluate-nightly"]["schedules"]]
    assert crons and all(CronSchedule(cron=c, timezone="UTC") for c in crons)
    assert "schedules" not in deployments["tune"]  # on demand
    with pytest.raises(ValueError):
        CronSchedule(cron="61 2 * * *")  # the check above can fail


def test_ray_cluster_has_a_gpu_worker_group_and_takes_credentials_from_secrets():
    cluster = yaml.safe_load((REPO / "infra" / "ray-cluster.yaml").read_text())
    assert cluster["apiVersion"].startswith("ray.io/") and cluster["kind"] == "RayCluster"
    groups = cluster["spec"]["workerGroupSpecs"]
    gpu = [g for g in groups if any("nvidia.com/gpu" in c["resources"]["limits"] for c in g["template"]["spec"]["containers"])]
    assert gpu and gpu[0]["maxReplicas"] >= gpu[0]["minReplicas"]
    pods = [cluster["spec"]["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in groups)]
    for pod in pods:
        for container in pod["containers"]:
            assert any(e.get("secretRef", {}).get("name") == "lrprop-s3" for e in container.get("envFrom", []))
            assert not any("AWS_SECRET" in str(v) for v in container.get("env", []))  # never inline
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert any(c.get("command", [])[:3] == ["prefect", "worker", "start"] for c in head)


def test_dockerfile_installs_the_torch_pair_first_and_bakes_in_no_weights():
    text = (REPO / "infra" / "Dockerfile").read_text()
    assert text.startswith("# docker build")
    torch_line = text.index('pip install "torch==2.14.1" "torchvision==0.29.1"')
    assert torch_line < text.index('pip install ".[s3,video,gpu]"')
    assert "COPY lrprop" in text and "COPY flows" in text
    assert "wget" not in text and "curl" not in text  # nothing fetched beyond packages


def test_pennaction_config_holds_table_5():
    config = load_config(REPO / "configs" / "pennaction.yaml")
    table5 = {
        "jumping_jacks": (20, 0.01, 0.4),
        "tennis_serve": (40, 0.003, 0.4),
        "tennis_forehand": (40, 0.003, 0.4),
        "baseball_swing": (40, 0.001, 0.4),
        "bowl": (60, 0.001, 0.4),
        "situp": (80, 0.001, 0.4),
        "bench_press": (80, 0.001, 0.4),
        "baseball_pitch": (80, 0.001, 0.4),
        "golf_swing": (80, 0.001, 1.6),
        "pushup": (80, 0.001, 1.6),
        "squat": (80, 0.001, 0.8),
        "pullup": (80, 0.001, 0.8),
        "clean_and_jerk": (80, 0.001, 0.8),
    }
    for action, (T, alpha, beta) in table5.items():
        c = config.for_class(action)
        assert (c.data.frames_per_view, c.loss.alpha, c.loss.beta) == (T, alpha, beta), action
    pouring = load_config(REPO / "configs" / "pouring.yaml")
    assert (pouring.data.frames_per_view, pouring.loss.alpha, pouring.loss.beta) == (240, 0.001, 0.8)
