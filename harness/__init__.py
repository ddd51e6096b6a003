"""Running a real Tripod server on loopback for the demo, the tests, the benchmarks and the load tests.

Not part of what is installed or shipped in the Bento: it is used from the repository root.
"""
