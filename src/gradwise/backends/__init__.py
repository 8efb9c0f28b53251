"""Work beyond one machine on Ray (the optional extra: pip install 'gradwise[ray]').

    gradwise predict RUN INPUT --backend ray [--address HOST:PORT]   (ray_predict)
    gradwise evaluate RUN --data SOURCE --backend ray                (ray_predict)
    gradwise train CONFIG --backend ray [--workers N]                (ray_train)
    gradwise tune CONFIG --backend ray                               (ray_tune)

Each module imports Ray inside its functions, so gradwise imports and works without it;
`ray_session` connects to a cluster (or starts a local one) and says how to install the
extra when it is missing. The work itself is the same code the local path runs: the Run's
preprocessing and model in each Ray Data actor, the pipeline's DDP worker in each Ray Train
worker, and the study's sampler, pruner and storage under Ray Tune.
"""
