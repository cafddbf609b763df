"""The base-install tests run in a venv with `pip install -e .` and pytest only (make
test-base, with --confcutdir here so the main suite's conftest and its extras are not
loaded)."""
