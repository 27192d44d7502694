"""Scale-out on torch.distributed, launched by torchrun: a module pipeline across ranks
(``--regime pipeline``) and data parallelism inside each module (``--data-parallel``).

    env.py            process group from torchrun's environment; one-line errors; rank-0 decisions
    link.py           send/recv of detached activations between pipeline ranks; records to rank 0
    data_parallel.py  shards of the data, gradient averaging per module step, SyncBatchNorm
    checkpoint.py     a checkpoint part per rank, committed by rank 0 once all are written
    trainer.py        the Trainer of one rank (above the training layer, as run.py)
    run.py            train/resume under torchrun: the one run body with this rank's hooks

Which modules each pipeline rank owns is part of the plan (``edgetrgl/planning/layout.py``).

The pipeline's loop is a registered regime, ``edgetrgl/training/regimes/pipeline.py``
(``multi_process=True``), below this package: the trainer here hands it its links. Data parallel
runs the single-process regimes' loops unchanged.
"""

from edgetrgl.planning.layout import rank_layout  # kept here: where torchrun users look for it

__all__ = ["rank_layout"]
