"""Training a run: the compiled train and eval steps (steps), the epoch loop with the stop protocol
(loop), what the chief writes (outputs) and `train_and_evaluate` (train)."""
