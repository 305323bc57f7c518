"""The job runtime beneath the training recipe: everything a run needs to be a well-behaved cluster job.

* :mod:`rundir` owns the run directory's files (names, atomic writes, main-rank-only writes, owner check);
* :mod:`runlock` keeps two processes out of one run directory; :mod:`signals` and :mod:`requeue` turn
  SLURM's warnings and preemption into a checkpoint and a requeue;
* :mod:`checkpoint` writes and reads the bit-exact resume state;
* :mod:`distributed` (ranks, collectives) and :mod:`sync_batchnorm` (global-batch BatchNorm under DDP);
* :mod:`environment` and :mod:`threads` record and set what the run runs on; :mod:`tracking` mirrors
  the run to wandb.

Nothing here knows a model, a dataset or an init: ``mimetic.train`` (the recipe) and
``mimetic.analysis`` (which reads runs through :mod:`rundir`) import it, never the reverse.
"""
