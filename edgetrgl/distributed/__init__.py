"""Scale-out on torch.distributed, launched by torchrun: a module pipeline across ranks
(``--regime pipeline``) and data parallelism inside each module (``--data-parallel``).

    env.py            process group from torchrun's environment; one-line errors; rank-0 decisions
    layout.py         which modules each pipeline rank owns (memory-balanced or equal)
    link.py           send/recv of detached activations between pipeline ranks; records to rank 0
    data_parallel.py  shards of the data, gradient averaging per module step, SyncBatchNorm
    checkpoint.py     a checkpoint part per rank, committed by rank 0 once all are written
    trainer.py        the Trainer of one rank (above the training layer, as run.py)
    run.py            train/resume under torchrun, one run folder (edgetrgl.train dispatches here)

The pipeline's loop is a registered regime, ``edgetrgl/training/regimes/pipeline.py``
(``multi_process=True``); data parallel runs the single-process regimes' loops unchanged.
"""

from edgetrgl.distributed.layout import rank_layout

__all__ = ["rank_layout"]
