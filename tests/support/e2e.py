"""The shared end-to-end window: generated days and the run options of its backfill."""

E2E_PER_DAY = 60_000
E2E_SEED = 0  # with this seed the second day is a promotion day: it holds interventions
# Per-scenario AUC on a few hundred samples is noise, so only big scenarios are gated here.
E2E_RUN = dict(model="sarnet", window=2, batch_size=256, max_epochs=3, hparams={"learning_rate": 3e-3},
               auc_floor=0.52, auc_delta=0.05, min_slice_size=1000)
