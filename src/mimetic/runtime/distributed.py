"""Which process am I: rank set-up from torchrun or SLURM, and the few collectives the run needs.

``torchrun --nproc_per_node=N train.py ...`` sets RANK / WORLD_SIZE / LOCAL_RANK /
MASTER_ADDR / MASTER_PORT. Under ``srun`` (``hydra/launcher=slurm_ddp``: one task per GPU)
the same facts come from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, and the master is
the first host of the job's node list. One process (no variables) is rank 0 of 1.

Only the main rank writes to the run directory; every rank trains on its shard of the
same (seed, epoch) order, and evaluation sums are all-reduced.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mimetic.errors import ConfigError


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _first_slurm_host() -> str:
    nodes = os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_NODELIST") or "localhost"
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True, timeout=10)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return nodes.split(",")[0].split("[")[0]


def from_environment(environ: dict[str, str] | None = None) -> DistEnv:
    """The process's place in the job, from torchrun's or SLURM's variables (torchrun wins)."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")))
    ntasks = int(env.get("SLURM_NTASKS", "1") or 1)
    if ntasks > 1 and "SLURM_PROCID" in env and env.get("MIMETIC_SLURM_DDP") == "1":
        return DistEnv(int(env["SLURM_PROCID"]), ntasks, int(env.get("SLURM_LOCALID", "0")))
    return DistEnv()


def setup(env: DistEnv, device: torch.device) -> bool:
    """Join the process group (gloo on CPU, nccl on CUDA); a no-op for one process, or when the caller
    has already joined one. True when this call created the group (and :func:`teardown` should end it)."""
    if not env.enabled or dist.is_initialized():
        return False
    if "MASTER_ADDR" not in os.environ:  # srun: derive the rendezvous from the job
        os.environ["MASTER_ADDR"] = _first_slurm_host()
        os.environ["MASTER_PORT"] = str(20000 + int(os.environ.get("SLURM_JOB_ID", "0")) % 20000)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(backend, rank=env.rank, world_size=env.world_size)
    except Exception as err:  # rendezvous failures come in many types
        raise ConfigError(
            f"rank {env.rank}/{env.world_size} could not join the process group ({backend} at "
            f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}): {err}"
        ) from None
    return True


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, in place (identity for one process)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _collective_device() -> torch.device:
    # nccl only moves CUDA tensors; gloo moves CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_agree(ok: bool) -> bool:
    """True only if every rank says True (one rank's refusal stops them all together)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return ok
    flag = torch.tensor([0 if ok else 1], dtype=torch.int64, device=_collective_device())
    dist.all_reduce(flag, op=dist.ReduceOp.SUM)
    return int(flag.item()) == 0


def broadcast_object(value):
    """Rank 0's ``value`` on every rank."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_object(value) -> list | None:
    """Every rank's ``value``, in rank order, on rank 0 (None on the others; ``[value]`` for one process)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return [value]
    out = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(value, out, dst=0)
    return out


def global_sums(sums: dict[str, torch.Tensor] | None) -> dict[str, torch.Tensor] | None:
    """A copy of per-rank metric sums, summed over ranks (``sums`` itself is left as it is)."""
    if sums is None:
        return None
    return {key: all_reduce_sum(value.clone()) for key, value in sums.items()}
