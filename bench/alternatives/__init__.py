"""The systems bench/compare.py measures, each runnable as `python -m bench.alternatives.X`.

Every runner takes the same arguments (see `po_files.runner_arguments`), writes each
PO's documents under `--out/<po_number>/` and a JSON report to `--report`; the harness
verifies the files on disk against the demo site's ground truth, not the report.
"""
