"""Alignment methods: how each builds its training set, its objective and its paper defaults.

Each method is one module registering a `Method` subclass in `METHODS`; `trainer.train` runs any
objective and `checkpoint.load_trained` turns its output back into a model.
"""
