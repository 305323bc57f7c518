"""Train a ViT with default or mimetic init:  python train.py init=mimetic dataset=cifar10

Configs live in configs/ (see README). Every run writes to a deterministic directory
under runs/ and resumes there if started again.
"""

import hydra

from mimetic.cli import main as run_job
from mimetic.cli import register_resolvers

register_resolvers()


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg) -> None:
    run_job(cfg)


if __name__ == "__main__":
    main()
