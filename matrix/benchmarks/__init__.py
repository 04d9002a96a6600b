"""The benchmarks: one module each, the official file format and scorer (`base.Benchmark` is the contract).

Their synthetic twins, the same files written from the shapes world, are the world's
(`matrix/world/benchmarks/`); no module here imports `matrix.world`.
"""
