"""msrec.components.trainer: the Trainer with the run date as its own execution property."""
