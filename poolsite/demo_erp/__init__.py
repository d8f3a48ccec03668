"""The demo procurement site: a Coupa-like web app that poolsite serves itself.

Pure standard library (no Django), so the engine's tests and the benchmarks can run
it in-process. `catalog` holds the POs, their files and the ground truth; `server`
serves them over HTTP behind a login wall, in one of two page shapes ("simple", or
"coupa": the structure of a real Coupa page, see `coupa_pages` and `coupa_server`).
"""
