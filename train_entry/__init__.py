"""train_entry: the programs a jobsub job runs for the TNEWS reference case (fine-tune, evaluate, pre-train,
predict) on torch + transformers. The jobsub client never imports this package."""
