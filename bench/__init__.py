"""The dispatcher's benchmarks, run from the checkout: ``python -m bench.run``."""
