"""Options of the data checks: which columns mean what, and the bounds and thresholds each check
uses. Every field has a default; the policy's `[data]` table and the command line override them.
Check modules add their own thresholds here, each with a comment saying what it bounds."""

from __future__ import annotations

from bastion.records import Record, RecordError

MiB = 1024 * 1024
MAX_LINE_KB = 2_000_000  # pyarrow's block size (the line bound + 1 KiB) is an int32

# name -> (minimum, meaning); every bound must be at least its minimum
_BOUND_MINIMUMS = {
    "max_rows_in_memory": (1, "rows a check may hold in memory at once"),
    "max_decompressed_mb": (1, "bytes inflated from one compressed data file"),
    "max_compression_ratio": (2, "inflated bytes per compressed byte of one data file"),
    "max_line_kb": (1, "bytes of one CSV/JSON Lines row (longer rows are malformed input)"),
    "batch_rows": (1, "rows per streamed batch"),
    "max_files": (1, "data files read under one folder"),
    "max_columns": (1, "columns of one dataset"),
    "worker_memory_mb": (256, "address space of the worker running the data checks"),
    "pii_max_cell_chars": (100, "characters of one cell examined for personal data"),
    "pii_min_k": (2, "k-anonymity threshold"),
    "contract_max_categories": (1, "categories a profiled text column may have"),
    "near_duplicate_digits": (1, "significant digits kept for near-duplicate rows"),
    "leakage_sample_rows": (100, "rows the target-leakage models see"),
    "drift_sample_rows": (100, "rows per version kept for the drift tests"),
    "drift_max_categories": (2, "categories compared per text column"),
    "label_max_rows": (100, "rows the label and poisoning checks model"),
    "label_min_group_rows": (3, "rows of the smallest poisoned subgroup or trigger reported"),
}

_FRACTIONS = (
    "leakage_score",
    "drift_ks",
    "drift_p_value",
    "label_group_purity",
    "label_alpha",
    "label_trigger_max_share",
)


class DataOptions(Record):
    """What the data checks need to know about a dataset, and their bounds."""

    target: str | None = None  # label column (needed by the label and poisoning checks)
    id_column: str | None = None  # column whose values identify rows (manifest, diff, leakage)

    # --- reading (datacheck/read.py, dataset.py) ---
    max_rows_in_memory: int = 2_000_000  # Dataset.table() refuses more (LimitExceeded)
    max_decompressed_mb: int = 8192  # a .csv.gz inflating past this is a decompression bomb
    max_compression_ratio: int = 500  # inflated/compressed past this (after 16 MiB): a bomb
    max_line_kb: int = 16384  # one row longer than this (16 MiB) is malformed input, not OOM
    batch_rows: int = 65_536  # rows per streamed batch
    max_files: int = 10_000  # data files read under one folder
    max_columns: int = 10_000  # columns of one dataset
    # the isolated worker that runs every data check of one command (datacheck/isolated.py)
    worker_timeout_s: float = 3600.0  # wall time; past it every dataset is incomplete (LIM001)
    worker_memory_mb: int = 16_384  # address space (pyarrow and BLAS reserve far more than RSS)

    # --- personal data (datacheck/pii.py) ---
    pii_max_cell_chars: int = 10_000  # characters of one cell examined (longer: PII008)
    pii_min_k: int = 5  # k-anonymity threshold over the quasi-identifiers (smaller: PII007)

    # --- contract (datacheck/contract.py) ---
    contract: str | None = None  # contract file to validate against (--contract)
    contract_max_categories: int = 50  # profile: text with more distinct values is free text

    # --- leakage between splits (datacheck/leakage.py) ---
    time_column: str | None = None  # event time for time leakage (else a date/time column)
    near_duplicate_digits: int = 3  # significant digits kept when comparing near-duplicates
    leakage_score: float = 0.98  # one feature's cross-validated score that is target leakage
    leakage_sample_rows: int = 20_000  # training rows the target-leakage models see

    # --- drift between versions (datacheck/drift.py) ---
    drift_psi: float = 0.2  # population stability index at or above which a feature drifted
    drift_ks: float = 0.1  # Kolmogorov–Smirnov statistic at or above which a number drifted
    drift_p_value: float = 0.001  # and the test must be significant at this level
    drift_sample_rows: int = 100_000  # rows per version kept (uniform sample) for the tests
    drift_max_categories: int = 1_000  # text columns with more distinct values are not compared

    # --- labels, poisoning and backdoors (datacheck/labels.py, poisoning.py) ---
    label_max_rows: int = 200_000  # rows modelled; above it a fixed-seed sample (said so: LBL006)
    label_min_group_rows: int = 8  # smallest subgroup/trigger reported as poisoned
    label_group_purity: float = 0.9  # share of one label that makes a subgroup suspicious
    label_alpha: float = 0.01  # family-wise significance of the subgroup and trigger tests
    label_trigger_max_share: float = 0.05  # a pattern on fewer rows than this is a trigger

    def __post_init__(self) -> None:
        for name, (minimum, meaning) in _BOUND_MINIMUMS.items():
            if getattr(self, name) < minimum:
                raise RecordError(name, f"must be at least {minimum} ({meaning})")
        for name in _FRACTIONS:
            if not 0.0 < getattr(self, name) <= 1.0:
                raise RecordError(name, "must be greater than 0 and at most 1")
        # NaN compares false with every PSI, so it would switch the drift test off silently
        if not 0.0 < self.drift_psi < float("inf"):
            raise RecordError("drift_psi", "must be a number greater than 0")
        if not 0.0 < self.worker_timeout_s < float("inf"):
            raise RecordError("worker_timeout_s", "must be a number of seconds greater than 0")
        if self.max_line_kb > MAX_LINE_KB:
            raise RecordError(
                "max_line_kb",
                f"must be at most {MAX_LINE_KB:,} (the readers' block size is 32-bit)",
            )

    @property
    def max_decompressed(self) -> int:
        return self.max_decompressed_mb * MiB

    @property
    def max_line(self) -> int:
        return self.max_line_kb * 1024
