"""train.py's Hydra app with a task that trains nothing: prints each job's overrides (``JOB ...``).

Hydra's own sweeper and launcher run exactly as for ``python train.py -m ...`` (same config, same
resolvers and callbacks), so the jobs it prints are the jobs train.py would launch."""

import hydra
from hydra.core.hydra_config import HydraConfig

from mimetic.cli import CONFIG_DIR, CONFIG_NAME, register_resolvers

register_resolvers()


@hydra.main(config_path=str(CONFIG_DIR), config_name=CONFIG_NAME, version_base="1.3")
def task(cfg) -> None:
    print("JOB", " ".join(HydraConfig.get().overrides.task), flush=True)


if __name__ == "__main__":
    task()
