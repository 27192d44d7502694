"""Training: the regimes, the trainer and the one run body, below the front door (:mod:`edgetrgl.api`).

    context.py               RegimeContext: what a regime's loop may use (the trainer implements it)
    regimes/, trainer.py     the loops, one per file, and the state they share
    epoch.py, inputs.py, ... the pieces below the loops: epoch bookkeeping, cached inputs, offloading
    run.py                   the one run body (one process, or a torchrun rank through its hooks)
    results.py, loading.py   RunResult, load_run, summaries; the data and the user's heads
"""
