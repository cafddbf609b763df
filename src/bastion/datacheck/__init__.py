"""Data checks: datasets read in bounded batches (dataset.py, read.py), integrity manifests and
diffs (manifest.py), and the checks the engine runs on them (engine.py): personal data, labels and
poisoning, contracts, leakage and drift. Heavy engines (pyarrow, pandas, scikit-learn, cleanlab)
are imported inside the functions that use them; they come with the `[data]` extra."""
