"""The development harness: a whole federation on one machine (`xgate federation up`).

Not part of the runtime: no gateway, registry or trust-service code imports this package (the
import contract in pyproject.toml says so). It starts those as processes, the way an operator
would, and tests, the demo and the benchmarks drive it.
"""
