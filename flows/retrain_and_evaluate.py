"""Deployment entry point: the whole pipeline from a config file (see infra/prefect.yaml).

python flows/retrain_and_evaluate.py configs/smoke.yaml lrprop-store     # run it once, here
"""

from __future__ import annotations

import sys

from prefect import flow

from lrprop.config import config_to_dict, load_config, with_ray_address
from lrprop.pipeline.flows import retrain_and_evaluate


@flow(name="retrain-and-evaluate-from-file")
def retrain_and_evaluate_from_file(
    config_path: str,
    store_uri: str,
    ray_address: str | None = None,
    overrides: list[str] | None = None,
    run_name: str | None = None,
    force: bool = False,
) -> dict:
    """Load ``config_path`` (a path in the deployment's checkout, or a store URI such as a search's
    ``s3://…/tune/<run>/<action>/best.yaml``; plus ``key=value`` overrides) and run the pipeline on
    ``store_uri``: classes with unchanged data, config and code are not retrained unless ``force``,
    and each class's ``promotion.alias`` moves only through the gate (``promotion.*``)."""
    config = with_ray_address(load_config(config_path, overrides or []), ray_address)
    return retrain_and_evaluate(config_to_dict(config), store_uri, run_name, force=force)


if __name__ == "__main__":
    retrain_and_evaluate_from_file(sys.argv[1], sys.argv[2])
