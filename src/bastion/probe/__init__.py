"""Model testing (`bastion probe`): evasion with a constraint-aware search over the raw
features, membership inference, extraction and consistency, each measured against the model
through one adapter (model.py) and turned into findings by the policy's [probe] thresholds.
Imported only when a probe runs: numpy, pandas and scikit-learn are loaded inside."""
