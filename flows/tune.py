"""Deployment entry point: a T/alpha/beta search from a config file (see infra/prefect.yaml).

python flows/tune.py configs/tune.yaml lrprop-store reach     # run it once, here
"""

from __future__ import annotations

import sys

from prefect import flow

from lrprop.config import config_to_dict, load_config, with_ray_address
from lrprop.pipeline.flows import tune_flow


@flow(name="tune-from-file")
def tune_from_file(
    config_path: str,
    store_uri: str,
    action: str | None = None,
    ray_address: str | None = None,
    overrides: list[str] | None = None,
    run_name: str | None = None,
) -> dict:
    """Load ``config_path`` (a path or a store URI; plus ``key=value`` overrides) and search one class's T, alpha, beta."""
    config = with_ray_address(load_config(config_path, overrides or []), ray_address)
    return tune_flow(config_to_dict(config), store_uri, action, run_name)


if __name__ == "__main__":
    tune_from_file(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
