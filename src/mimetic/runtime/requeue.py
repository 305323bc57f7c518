"""Requeue a SLURM job after it stopped on a signal and wrote its checkpoint.

Decision (issue 10): the *training process* checkpoints first and requeues second,
instead of submitit's own handler, which requeues from inside the signal handler and
exits at once (mid-step: the work since the last checkpoint would be lost).

* SLURM warns a job before its time limit with the signal submitit asks for
  (``--signal=USR2@<signal_delay_s>``, configs/hydra/launcher/slurm*.yaml) and preempts it
  with SIGTERM; ``sbatch --signal=USR1@180`` scripts send SIGUSR1. The trainer's
  :class:`~mimetic.runtime.signals.GracefulStop` catches all of these, finishes the step,
  writes the checkpoint (atomically: a second signal never tears it) and raises
  ``StopRequested``. (A job preempted without a warning gets SIGTERM: it checkpoints too.)
* ``cli.main`` then calls :func:`requeue_if_asked`: when the job asked for it
  (``MIMETIC_REQUEUE=1``, exported by the slurm launcher configs) and this is a SLURM job,
  global rank 0 runs ``scontrol requeue $SLURM_JOB_ID`` (array jobs:
  ``$SLURM_ARRAY_JOB_ID_$SLURM_ARRAY_TASK_ID``) and the process exits with 128 + signal.
* The requeued job runs the same submission again; its run directory is a function of
  the config, so it finds the checkpoint and resumes exactly where the signal stopped it
  (mid-epoch included); a finished job is skipped (DONE).

SIGTERM and SIGINT (``scancel``, preemption, Ctrl-C) checkpoint the same way but never
requeue from here: ``scancel`` means stop, and a preempted job is requeued by SLURM itself
(PreemptMode=REQUEUE); the warning signals are what a job asks for to be requeued. Where
``scontrol`` is missing or refuses, one warning is logged and the exit is the same.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess

log = logging.getLogger("mimetic")

# The warnings a job asks for (--signal=USR1@... / submitit's USR2@...). Not SIGTERM: that is either
# ``scancel`` (the user's stop: requeueing it would undo it) or preemption, where SLURM's own
# PreemptMode=REQUEUE puts the job back in the queue (and the job still checkpoints first).
REQUEUE_SIGNALS = ("SIGUSR1", "SIGUSR2")


def slurm_job_id(environ=None) -> str | None:
    env = os.environ if environ is None else environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


def _global_rank(env) -> int:
    return int(env.get("RANK", env.get("SLURM_PROCID", "0")) or 0)


def requeue_if_asked(signal_name: str, environ=None) -> bool:
    """Requeue this SLURM job (rank 0 only) if ``MIMETIC_REQUEUE=1``; True if ``scontrol`` accepted."""
    env = os.environ if environ is None else environ
    job = slurm_job_id(env)
    if env.get("MIMETIC_REQUEUE") != "1" or job is None or signal_name not in REQUEUE_SIGNALS:
        return False
    if _global_rank(env) != 0:
        return False
    scontrol = shutil.which("scontrol", path=env.get("PATH"))
    if scontrol is None:
        log.warning("stopped by %s but scontrol is not on PATH: job %s is not requeued (resubmit the same "
                    "command; it resumes from the checkpoint)", signal_name, job)
        return False
    try:
        result = subprocess.run([scontrol, "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("scontrol requeue %s failed (%s); resubmit the same command to resume", job, err)
        return False
    if result.returncode != 0:
        log.warning("scontrol requeue %s refused (%s); resubmit the same command to resume", job,
                    (result.stderr or result.stdout).strip().splitlines()[-1:] or result.returncode)
        return False
    log.warning("requeued SLURM job %s after %s; it resumes from the checkpoint", job, signal_name)
    return True
