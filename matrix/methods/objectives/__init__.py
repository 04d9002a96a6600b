"""Training objectives, one plug-in per file, registered by name into `matrix.registry.OBJECTIVES`.

An objective says how a training example is encoded (which of its conversations), what it computes
before the first step (a reference pass), its loss on a micro-batch, what each optimizer step logs and
what the train stage's result reports. A method names its objective (`Method.objective`); the trainer
(`matrix.methods.trainer`) runs whichever is registered under that name through one loop and one
training engine (`matrix.methods.engine`), so a new objective (KTO, IPO) is one file here.
`base` is the contract, `losses` the loss math on causal-LM logits the objectives share.
"""
