"""The parts of bench/compare.py: measuring a run, checking its files, reporting."""
