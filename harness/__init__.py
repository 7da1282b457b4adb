"""What the tests and the benchmarks share: loopback ports, gunicorn, moto's EC2.

Not part of the dispatcher's distribution (pyproject.toml packages ``dispatcher`` only):
it is imported from the checkout, by pytest (``pythonpath = ["."]``) and by
``python -m bench.run``.
"""
