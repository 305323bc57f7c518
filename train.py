"""Train a model with default or mimetic init:  python train.py init=mimetic dataset=cifar10

Configs live in configs/ and in the registered options of the package (see README). Every
run writes to a deterministic directory under runs/ and resumes there if started again.
"""

from pathlib import Path

import hydra

from mimetic.cli import main as run_job
from mimetic.cli import register_resolvers

register_resolvers()
CONFIGS = str(Path(__file__).resolve().parent / "configs")  # absolute: works when imported too


@hydra.main(version_base="1.3", config_path=CONFIGS, config_name="train")
def main(cfg):
    return run_job(cfg)  # a failed sweep job returns its failure for the sweep report


if __name__ == "__main__":
    main()
