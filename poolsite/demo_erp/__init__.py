"""The demo procurement site: a Coupa-like web app that poolsite serves itself.

Pure standard library (no Django), so the engine's tests and the benchmarks can run
it in-process. `catalog` holds the POs, their files and the ground truth; `server`
serves them over HTTP behind a login wall.
"""
