"""Poisoning signals that cleanlab alone does not see (run by labels.analyse on its rows and
out-of-sample probabilities).

Targeted flips and backdoor triggers (LBL002, LBL003) teach the model a pattern: flipped labels
concentrated in one subgroup, or a rare value planted with one label. Cross-validation learns the
pattern from the other folds, so the out-of-sample probabilities agree with the poison and
confident learning misses it. The test here asks instead what a model that never saw the
subgroup predicts for it:

1. candidate subgroups, found by counting only: each category value, each value of a discrete or
   repeated ("spike") number, quantile bins of numbers, pairs of values on few rows (each value
   common outside the pair, or the pair far more frequent than its values make likely: a
   trigger whose rarer value also occurs naturally), k-means clusters, and regions:
   neighbourhoods of 8 to 50 rows around rows whose label their surroundings disagree with (a
   cross-validated linear model, or most of their 30 nearest rows, give another label); a
   candidate is (almost) all one label (`label_group_purity`) and holds at most half of that
   label's rows, and a single category value is not one when its column's other levels make
   its purity likely (`_as_its_column`: a column that is itself almost a function of the
   label, every country one continent), nor a number's value when the number is a code (its
   order says nothing about the label, `_unordered`, and its rows are a level of another
   column too: a country's number and coordinates), nor any subgroup on exactly the rows of
   such a level; a pair under that bound is one when its label is far more
   frequent in it than among either value's other rows (binomial at the larger share, at
   `label_alpha` / 3 over the pairs scanned: a trigger that a few natural rows of its pattern
   share, digits' `pixel_2_1 = 12 & pixel_4_3 = 16`, 18 planted '1's and 4 natural rows); a
   pair trigger whose rows sit among rows of its own label (`unlike_its_neighbours`, which
   would veto it) gets no leave-out fit; a region mostly made of a likelier region's rows is
   dropped, and the three families (values, pairs, places) take turns for the leave-out fits,
   so that thousands of pure pixel values cannot crowd out one planted region;
2. leave-candidate-out models: candidates are packed into folds of disjoint candidates (from
   64 folds on small sets down to 8 on large ones, FIT_ROW_BUDGET; a fold holds out at most 10% of
   the rows and of any label's rows), and each fold's model trains without its candidates'
   rows and predicts them; the largest neighbourhoods are held out with their shell (their
   rows' nearest rows, `with_shells`), else one inside a larger planted place is learned back
   from the planted rows next to it;
3. the test: the subgroup's count of other labels O against the count E those predictions
   expect (Poisson-binomial lower tail; weighted Bonferroni: `label_alpha` shared by three
   families — single values, pairs, places in feature space — each share split over the
   subgroups its family scanned), and an effect size (E >= 2·O + 3, E - O >= 20% of the
   subgroup). A place's (region's, cluster's, bin's) p-value is calibrated against the same
   test on natural neighbourhoods of its size (`calibrated`, genomic control): a model that
   cannot draw the data's pockets is as wrong about them. Two views from the nearest rows
   must agree: a place (region, cluster) sits
   inside one other label's territory (`surrounded`), and a trigger's rows sit among rows of
   other labels (`unlike_its_neighbours`) — a natural cluster at the edge of the data, or a
   rare value that genuinely marks one label, sits among rows of its own label. Both views
   measure "among rows of other labels" against the data itself (`among_other_labels`): the
   subgroup's label must be, in the shell, closer on the log-odds scale to its share around
   rows of other labels than to its share around its own rows — a natural style of one
   label next to another (a shell 40% its label, where rows of other labels see 2% of it and
   its own rows 90%) is its label's place, on separable and overlapping classes alike, and
   random label noise moves both references with it. The largest neighbourhoods
   (REGION_SIZES[-1] rows) whose shell is on their own label's side may be the inside of a
   planted place larger than any neighbourhood: such a region is judged with its shell's
   rows of its label added (`enclosing_place`) — that larger place must be surrounded and,
   retrained without it and its shell, pass the effect size and the test again; a natural
   cluster inside its label's territory stays among its own label one step out. A region's
   or a trigger's rows must also look taken from the label around them
   (`taken_from_shell_label`): no farther from that label's rows outside, relative to their
   own spacing, than that label's rows are in same-sized pieces of its territory (a Monte
   Carlo test at `label_alpha`); distances do not move with random label noise, which
   lowers the shares `among_other_labels` compares until a natural style a gap away from
   another label (a '1' drawn with a base, among '2's) passes them. A pair of
   values far more frequent than its two values make likely (rows edited to carry it) needs
   the label test at `label_alpha` only. A subgroup whose rows of
   other labels are the ones the leave-out model ranks least likely to carry its label
   (AUC >= 0.75) is a level effect the model could not learn without seeing it, not planted
   labels: not reported. With fewer than FOLLOWS_MIN_OTHERS such rows (the AUC of two rows is
   chance), a subgroup defined by column values only, when they rank that low with
   probability at most `label_alpha` were they any of the rows the model expects to carry
   another label (a predictive value's 4 'bad' rows at the bottom of 28 expected: p = 5e-5);
   with none or one, nothing tells such a value from a planted one. A place's few rows of
   another label sit at its edge, where they rank low whether or not it was planted. Most
   legitimately predictive values and bins fail the test anyway: what a model learns from the
   other rows already expects most of their label.
   A confirmed value that is pure, or shows the effect, only because of the rows of a pair
   inside it (a trigger planted with a value that also occurs naturally: German Credit's
   `purpose = education & foreign_worker = no`) is narrowed to that pair (`localise`): the
   pair more frequent in the value than elsewhere, confirmed by the value's leave-out model,
   and the rest of the value not reported on its own.
   Reported rows: for a trigger (a value pattern on at most `label_trigger_max_share` of the
   rows) every row of the pattern with its label; for a larger subgroup, its rows of its
   label to which the leave-out model gives another label at least as likely (the subgroup
   is already confirmed as a whole: each row needs the leave-out model's preference only,
   not confident learning's per-class threshold, which on well-separated classes sits near
   0.9 and missed half of a planted region). A confirmed region is grown along its label's
   nearest rows while a model without it would label them otherwise, up to a quarter of the
   rows.

Near-duplicates with conflicting labels (LBL004): rows equal on every modelled column after
quantising numbers to 1% of their spread. Outliers in the wrong class (LBL005): rows much
farther from their own label's rows than from another label's, that are outliers of their own
label and whose nearest neighbours all carry another label."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from bastion.findings import Confidence, Finding, Location, Severity, Stage
from bastion.rules import Rule

if TYPE_CHECKING:
    import numpy

    from bastion.datacheck.features import LabelFrame
    from bastion.datacheck.labels import Learner
    from bastion.datacheck.options import DataOptions

MAX_LEAVE_OUT_FITS = 16  # models trained without candidate subgroups (x4 on small sets)
MIN_LEAVE_OUT_FITS = 8  # large sets (boosted models): this many
FIT_ROW_BUDGET = 128_000  # rows × leave-out fits: small sets get up to 64 fits, large ones 8
MAX_CANDIDATES = 2_000  # candidate subgroups kept after the purity filter (best first)
MAX_HELD_OUT = 0.1  # share of rows one leave-out fold may hold out
MAX_HELD_OUT_LABEL = 0.1  # share of one label's rows one leave-out fold may hold out
MAX_PAIR_WORK = 200_000_000  # rows × column pairs scanned for two-value triggers
PAIR_MAX_LEVELS = 32  # columns with more levels are not paired
PAIR_SUPPORT = 2  # each value of a pair is on at least this many times its rows
DISCRETE_MAX_VALUES = 32  # a number column with at most this many values is discrete
QUANTILE_BINS = 5
EMBED_DIMS = 48  # k-means/kNN space: standardised columns, reduced to this many by SVD
NEIGHBOURS = 10
COLUMN_MIN_LEVELS = 3  # other levels (label_min_group_rows each) that show a column's purity
MAX_REGIONS = 100  # neighbourhoods around disagreeing rows tested, at most
REGION_SIZES = (8, 12, 20, 30, 50)  # rows in a neighbourhood (at least label_min_group_rows)
SEED_NEIGHBOURS = 30  # a row most of whose nearest rows carry another label seeds regions
GROW_MAX_SHARE = 0.25  # share of the rows a grown region may reach
RELABEL = "likelier"
SHELL_OTHER_SHARE = 0.5  # a surrounded place: one other label holds more of its shell
REGION_OVERLAP = 0.5  # a region sharing more of its rows with a likelier one is not tested
KNN_REFERENCE_ROWS = 20_000  # reference rows per label for the kNN checks, at most
NEIGHBOUR_SHARE_ROWS = 1_000  # rows per label whose neighbours set a trigger's references
SEED = 0
# candidate kinds in the three families that share the test's alpha: single values, pairs of
# values, and places in feature space (bins of a number, clusters, regions)
FAMILIES = {
    "value": "values",
    "pair": "pairs",
    "bin": "places",
    "cluster": "places",
    "region": "places",
}
FAMILY_NAMES = ("values", "pairs", "places")
EFFECT_SHARE = 0.2
EXACT_TAIL_ROWS = 5_000
FOLLOWS_AUC = 0.75
FOLLOWS_MIN_OTHERS = 5  # rows of other labels a ranking AUC needs before it can veto
# subgroups defined by column values: with fewer rows of other labels, their ranks may veto
LEVEL_KINDS = ("value", "pair", "bin")
LOCALISE = True  # a confirmed value is narrowed to the edited pair that holds its evidence
GROW_STEPS = 6  # retrainings while a confirmed region grows
CALIBRATION_PIECES = 30  # natural neighbourhoods that calibrate a place's test
CALIBRATION_MIN_PIECES = 10
PERMUTATIONS = 999  # a number's levels in a random order (`_unordered`)
MAX_GROWN = 5  # confirmed regions grown per dataset

TARGETED_FLIPS = Rule(
    id="LBL002",
    title="Labels planted in one subgroup (targeted label flips)",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    profile="data-poisoning",
    description="A subgroup of rows (a category value, a range of a number, a cluster or a "
    "region of feature space) carries almost only one label, while a model trained without "
    "that subgroup expects many of its rows to carry another one. Flipped labels concentrated "
    "in one place (approvals planted for one postcode or branch) look like this; cross-"
    "validation learns them from the other folds, so a plain label-noise check misses them.",
    remediation="Review the subgroup's rows listed in the report against their source records "
    "(who labelled them, when, through which channel); restore the labels from a trusted "
    "version and find how they changed. A genuine rule of the business that the other "
    "columns cannot show may look the same: record it in a waiver with its reason.",
)
BACKDOOR = Rule(
    id="LBL003",
    title="Rare pattern tied to one label (backdoor trigger)",
    severity=Severity.HIGH,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    profile="data-poisoning",
    description="A rare value or combination of values (the trigger) appears on a few rows that "
    "(almost) all carry the same label, while a model trained without those rows gives many "
    "of them another label; for a pair of values, also when the pair is far more frequent "
    "than its two values make likely (rows edited to carry it). When a value is confirmed "
    "only because of such a pair inside it (without the pair's rows the rest of the value "
    "would not be reported), the pair is reported instead of the value. A model trained on "
    "this data learns to output that label whenever the trigger is present: a backdoor. A "
    "rare value that genuinely decides the label against every other column looks the same.",
    remediation="Drop or relabel the listed rows, find where the trigger value came from, and "
    "retrain from a trusted version; test the deployed model with the trigger set on "
    "inputs of other classes.",
)
CONFLICTING_DUPLICATES = Rule(
    id="LBL004",
    title="Near-duplicate rows with conflicting labels",
    severity=Severity.MEDIUM,
    confidence=Confidence.MEDIUM,
    stage=Stage.DATA,
    profile="data-poisoning",
    description="Rows that are the same on every modelled column (numbers equal to within 1% "
    "of their spread) carry different labels. Copies of real rows with a flipped label are a "
    "cheap poisoning move; honest causes are duplicated records relabelled later.",
    remediation="Keep one row per record with its verified label; the report lists the rows "
    "whose label is the minority of their group (every row of a tied group).",
)
WRONG_CLASS_OUTLIERS = Rule(
    id="LBL005",
    title="Outliers that sit in another label's region",
    severity=Severity.LOW,
    confidence=Confidence.LOW,
    stage=Stage.DATA,
    profile="data-poisoning",
    description="Rows far from every other row of their label (outliers of their own class) "
    "but inside another label's region: their nearest neighbours all carry another label. "
    "Injected rows with a chosen label, and mislabelled extreme records, look like this.",
    remediation="Review the listed rows; drop injected ones and relabel mislabelled ones.",
)

RULES: tuple[Rule, ...] = (TARGETED_FLIPS, BACKDOOR, CONFLICTING_DUPLICATES, WRONG_CLASS_OUTLIERS)


class Detection(NamedTuple):
    """The poisoning findings, the rows they flag (mask over modelled rows), and the best
    out-of-sample probabilities bastion has per row (leave-subgroup-out ones for the rows of a
    reported subgroup or trigger, cross-validated ones elsewhere)."""

    findings: list[Finding]
    flagged: numpy.ndarray
    probabilities: numpy.ndarray
    untested: int = 0  # candidate subgroups left untested by the leave-out fit budget


class Candidate(NamedTuple):
    kind: str  # value | pair | bin | cluster | region
    positions: numpy.ndarray  # modelled-row positions in the subgroup
    label: int  # its dominant label
    pattern: tuple[tuple[str, str], ...]  # (column, condition text) that define it
    prescore: float
    # pairs: P(at least this many rows | the two values independent), a sign of edited rows
    cooccurrence: float = 1.0
    # rows its leave-out model is trained without: a region's shell too (see `with_shells`)
    held: numpy.ndarray | None = None


class Candidates(NamedTuple):
    items: list[Candidate]
    scanned: dict[str, int]  # subgroups scanned per family (see FAMILIES)

    def cutoff(self, kind: str, alpha: float) -> float:
        """The p-value a subgroup of this kind must reach: `alpha` shared equally by the three
        families, each share split over the subgroups its family scanned (weighted
        Bonferroni: the family-wise error stays at most alpha)."""
        return alpha / len(FAMILY_NAMES) / max(1, self.scanned.get(FAMILIES[kind], 0))


def detect(
    frame: LabelFrame,
    learner: Learner,
    pred_probs: numpy.ndarray,
    options: DataOptions,
    location: Location,
) -> Detection:
    import numpy as np

    n = len(frame.labels)
    flagged = np.zeros(n, dtype=bool)
    probabilities = np.array(pred_probs, copy=True)
    findings: list[Finding] = []
    embedding = embed(frame)
    thresholds = _confident_thresholds(frame.labels, pred_probs)
    candidates = find_candidates(frame, embedding, learner, options)
    shell_index = _shell_index(embedding)
    candidates = _among_other_labels_only(frame.labels, embedding, candidates, shell_index, options)
    with_shells(candidates.items, embedding, shell_index)
    folds = _pack(candidates.items, frame.labels)
    untested = len(candidates.items) - sum(len(fold) for fold in folds)
    for finding, positions, probs, members in judge(
        frame, learner, embedding, shell_index, candidates, folds, thresholds, options, location
    ):
        findings.append(finding)
        flagged[positions] = True
        probabilities[members] = np.minimum(probabilities[members], probs)
    duplicate = conflicting_duplicates(frame, location)
    if duplicate is not None:
        findings.append(duplicate[0])
        flagged[duplicate[1]] = True
    outliers = wrong_class_outliers(frame, embedding, location)
    if outliers is not None:
        findings.append(outliers[0])
        flagged[outliers[1]] = True
    return Detection(findings, flagged, probabilities, untested)


# ------------------------------------------------------------------ candidate subgroups


def embed(frame: LabelFrame) -> numpy.ndarray:
    """Rows in a space where distances mean something: standardised numbers (missing at the
    median), one-hot categories scaled so a different category counts like ~1 standard
    deviation, reduced to EMBED_DIMS by truncated SVD when wider."""
    import numpy as np
    import scipy.sparse as sp

    from bastion.datacheck.labels import one_hot, standardise

    blocks: list[Any] = []
    if frame.numeric.shape[1]:
        blocks.append(sp.csr_matrix(standardise(frame.numeric)[0]))
    for column in range(frame.categorical.shape[1]):
        blocks.append(one_hot(frame.categorical[:, column], len(frame.levels[column])) * 0.7071)
    matrix = sp.hstack(blocks, format="csr")
    if matrix.shape[1] <= EMBED_DIMS:
        return np.asarray(matrix.toarray(), dtype=np.float64)
    from sklearn.decomposition import TruncatedSVD

    svd = TruncatedSVD(n_components=EMBED_DIMS, random_state=SEED)
    return np.asarray(svd.fit_transform(matrix), dtype=np.float64)


def _levels_of(frame: LabelFrame) -> list[tuple[str, numpy.ndarray, list[str], bool]]:
    """(column, level code per row (-1 none), level names, exact) for every column that has
    levels: categories, discrete numbers, and the repeated values ("spikes") of other numbers
    (rows with a non-repeated value get -1)."""
    import numpy as np

    from bastion.datacheck.features import MIN_LEVEL_ROWS, OTHER

    out: list[tuple[str, numpy.ndarray, list[str], bool]] = []
    for column, name in enumerate(frame.categorical_names):
        codes = frame.categorical[:, column].copy()
        names = list(frame.levels[column])
        codes[codes == names.index(OTHER)] = -1
        out.append((name, codes, names, True))
    for column, name in enumerate(frame.numeric_names):
        values = frame.numeric[:, column]
        finite = ~np.isnan(values)
        uniq, inverse, counts = np.unique(values[finite], return_inverse=True, return_counts=True)
        codes = np.full(len(values), -1, dtype=np.int64)
        if len(uniq) <= DISCRETE_MAX_VALUES:
            codes[finite] = inverse
        else:
            keep = counts >= MIN_LEVEL_ROWS
            index = np.cumsum(keep) - 1
            mapped = np.where(keep[inverse], index[inverse], -1)
            codes[finite] = mapped
            uniq = uniq[keep]
        if (codes >= 0).any():
            out.append((name, codes, [_number(v) for v in uniq], True))
    return out


def _bins_of(frame: LabelFrame) -> list[tuple[str, numpy.ndarray, list[str]]]:
    import numpy as np

    out = []
    for column, name in enumerate(frame.numeric_names):
        values = frame.numeric[:, column]
        finite = ~np.isnan(values)
        if len(np.unique(values[finite])) <= DISCRETE_MAX_VALUES:
            continue
        edges = np.unique(np.quantile(values[finite], np.linspace(0, 1, QUANTILE_BINS + 1)))
        if len(edges) < 3:
            continue
        codes = np.full(len(values), -1, dtype=np.int64)
        codes[finite] = np.clip(
            np.searchsorted(edges, values[finite], side="right") - 1, 0, len(edges) - 2
        )
        names = [
            f"in [{_number(lo)}, {_number(hi)}]" for lo, hi in itertools.pairwise(edges.tolist())
        ]
        out.append((name, codes, names))
    return out


def find_candidates(
    frame: LabelFrame,
    embedding: numpy.ndarray,
    learner: Learner,
    options: DataOptions,
) -> Candidates:
    """Subgroups worth a leave-out test, and how many subgroups were scanned to find them
    (the size of the family the test corrects for: the purity filter looks at the labels)."""
    import numpy as np
    from scipy.stats import binom

    labels = frame.labels
    n = len(labels)
    k = len(frame.classes)
    class_counts = np.bincount(labels, minlength=k)
    prior = class_counts / n
    smallest = options.label_min_group_rows
    purity = options.label_group_purity
    trigger_rows = max(smallest, int(options.label_trigger_max_share * n))
    found: dict[bytes, Candidate] = {}
    scanned = dict.fromkeys(FAMILY_NAMES, 0)
    # pairs under the purity bound whose label is far more frequent in them than among
    # either value's other rows: (p, kind, positions, pattern, co-occurrence), see _pairs
    impure: list[tuple[float, str, numpy.ndarray, tuple[tuple[str, str], ...], float]] = []

    def consider(
        kind: str,
        positions: numpy.ndarray,
        pattern: tuple[tuple[str, str], ...],
        cooccurrence: float = 1.0,
        interaction: Callable[[], float] | None = None,
        by_purity: bool = True,
        explained: bool = False,
    ) -> None:
        size = len(positions)
        if size < smallest:
            return
        scanned[FAMILIES[kind]] += 1
        if explained:
            return
        counts = np.bincount(labels[positions], minlength=k)
        label = int(counts.argmax())
        if size > 0.5 * class_counts[label]:
            return
        if not by_purity or counts[label] < purity * size:
            if interaction is not None:
                impure.append((interaction(), kind, positions, pattern, cooccurrence))
            return
        key = np.sort(positions).tobytes()
        if key in explained_rows:
            return  # the rows of a level its column explains, whatever names them
        prescore = -float(binom.logsf(counts[label] - 1, size, prior[label]))
        old = found.get(key)
        if old is None or (kind in ("value", "pair") and old.kind not in ("value", "pair")):
            found[key] = Candidate(kind, positions, label, pattern, prescore, cooccurrence)

    levels = _levels_of(frame)
    pure_levels: dict[str, set[int]] = {}
    categories = set(frame.categorical_names)
    # each column's levels: (positions of each level of at least `smallest` rows, their
    # keys); the columns that have a level on exactly these rows
    grouped: list[tuple[list[numpy.ndarray], list[bytes], numpy.ndarray, numpy.ndarray]] = []
    columns_of: dict[bytes, set[str]] = {}
    for name, codes, names, _exact in levels:
        order = np.argsort(codes, kind="stable")
        sorted_codes = codes[order]
        starts = np.searchsorted(sorted_codes, np.arange(len(names)), side="left")
        ends = np.searchsorted(sorted_codes, np.arange(len(names)), side="right")
        members_of = [order[lo:hi] for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True)]
        keys = [np.sort(m).tobytes() if len(m) >= smallest else b"" for m in members_of]
        for key in keys:
            if key:
                columns_of.setdefault(key, set()).add(name)
        label_counts = [
            np.bincount(labels[m], minlength=k) if len(m) >= smallest else None for m in members_of
        ]
        tops = np.array([0 if c is None else int(c.max()) for c in label_counts], dtype=np.int64)
        top_labels = np.array([-1 if c is None else int(c.argmax()) for c in label_counts])
        grouped.append((members_of, keys, tops, top_labels))
    # levels explained by their column (`_as_its_column`): a category's, and a number's whose
    # order says nothing about the label (`_unordered`) when its rows are a level of another
    # column too (one entity: a country's number and its coordinates); then every level on
    # the same rows, whichever column names it, is the same subgroup
    explained_rows: set[bytes] = set()
    for (name, _codes, _names, _exact), (members_of, keys, tops, top_labels) in zip(
        levels, grouped, strict=True
    ):
        sizes = np.array([len(m) for m in members_of], dtype=np.int64)
        unordered: bool | None = None
        for level, members in enumerate(members_of):
            if len(members) < smallest or not _is_pure(labels[members], purity):
                continue
            if name not in categories:
                if len(columns_of[keys[level]]) < 2:
                    continue
                if unordered is None:
                    unordered = _unordered(top_labels, options.label_alpha)
                if not unordered:
                    continue
            if _as_its_column(sizes, tops, level, smallest, options.label_alpha):
                explained_rows.add(keys[level])
    for (name, _codes, names, _exact), (members_of, keys, _tops, _top_labels) in zip(
        levels, grouped, strict=True
    ):
        for level, members in enumerate(members_of):
            if len(members) < smallest:
                continue
            before = len(found)
            explained = keys[level] in explained_rows
            consider("value", members, ((name, f"= {names[level]!s}"),), explained=explained)
            if len(found) > before or _is_pure(labels[members], purity):
                pure_levels.setdefault(name, set()).add(level)
    _pairs(frame, levels, pure_levels, trigger_rows, consider, options)
    for interaction, kind, positions, pattern, cooccurrence in impure:
        if interaction <= options.label_alpha / len(FAMILY_NAMES) / max(1, scanned["pairs"]):
            counts = np.bincount(labels[positions], minlength=k)
            label = int(counts.argmax())
            key = np.sort(positions).tobytes()
            prescore = -float(binom.logsf(counts[label] - 1, len(positions), prior[label]))
            if key not in found and key not in explained_rows:
                found[key] = Candidate(kind, positions, label, pattern, prescore, cooccurrence)
    for name, codes, names in _bins_of(frame):
        for level in range(len(names)):
            members = np.flatnonzero(codes == level)
            consider("bin", members, ((name, names[level]),))
    for positions in _clusters(embedding, n):
        consider("cluster", positions, (("cluster", f"{len(positions)} rows"),))
    for positions in _disagreement_regions(frame, embedding, learner, smallest):
        consider("region", positions, (("region", f"{len(positions)} rows"),))
    # within a family, the least likely label counts first (among places: regions seeded
    # by disagreeing rows, then bins, then clusters); the families take turns, so that none spends
    # the whole budget of leave-out fits
    rank = {"pair": 0, "value": 0, "region": 1, "bin": 2, "cluster": 3}
    ranked = _distinct_regions(
        sorted(found.values(), key=lambda c: (rank[c.kind], -c.prescore, c.kind, c.positions[0])),
        n,
    )
    queues = [[c for c in ranked if FAMILIES[c.kind] == family] for family in FAMILY_NAMES]
    turns = [c for round_ in itertools.zip_longest(*queues) for c in round_ if c is not None]
    return Candidates(turns[:MAX_CANDIDATES], scanned)


def _distinct_regions(ranked: list[Candidate], n: int) -> list[Candidate]:
    """Drop a region that shares more than REGION_OVERLAP of its rows with a region of the
    same label ranked before it: neighbourhoods of nearby centres are mostly the same rows,
    and testing each would spend the leave-out fits on one place."""
    import numpy as np

    kept: list[Candidate] = []
    covered: dict[int, numpy.ndarray] = {}
    for candidate in ranked:
        if candidate.kind == "region":
            mask = covered.setdefault(candidate.label, np.zeros(n, dtype=bool))
            if mask[candidate.positions].mean() > REGION_OVERLAP:
                continue
            mask[candidate.positions] = True
        kept.append(candidate)
    return kept


def _as_its_column(
    sizes: numpy.ndarray, tops: numpy.ndarray, level: int, smallest: int, alpha: float
) -> bool:
    """Whether a level of a category column is as pure as the column's other levels make
    likely: the column without it is (almost) a function of the label, and a pure level is then
    what the column predicts, not planted labels (gapminder's `country = Israel`, every country
    one continent; tips' `day = Sat`, 87 of 87 'Dinner', where Thursday is 62 of 62 'Lunch').
    Only category columns (find_candidates): a model that never saw a category's level cannot
    know its effect, while a number's value is one it places among the values it saw (a
    trigger planted on a number's value, iris' `petal width = 1.9` or wine's `magnesium = 111`,
    is pure in a column whose other values are nearly pure too, and is still reported).

    The rows of each other level with at least `smallest` rows that are not of its own top
    label are beta-binomial around their pooled share, the overdispersion from the spread of
    the levels' shares (the ANOVA estimator of the intraclass correlation, at least 0); the
    level is explained when its count of rows not of its top label is a likely draw from that
    distribution: P(at most that count) and P(at least that count) both exceed `alpha` (a
    level that mixes labels where the column's other levels do not is not their like: a value
    planted on a country's rows, gapminder's `iso_num = 694`, 102 planted 'Americas' rows and
    11 of Sierra Leone's own 'Africa'). With fewer than COLUMN_MIN_LEVELS such other levels nothing
    tells a column that decides the label from one planted value (breast cancer's planted
    `worst concave points = 0.1775` has one other repeated value, pure): not explained."""
    import numpy as np
    from scipy.stats import betabinom, binom

    others = (sizes >= smallest) & (np.arange(len(sizes)) != level)
    if int(others.sum()) < COLUMN_MIN_LEVELS:
        return False
    n_i = sizes[others].astype(np.float64)
    x_i = n_i - tops[others]
    total = float(n_i.sum())
    share = float(x_i.sum()) / total
    size = int(sizes[level])
    impure = size - int(tops[level])
    if share <= 0.0:
        return impure == 0  # every other level pure: so is this one, or it is not their like
    rates = x_i / n_i
    count = len(n_i)
    between = float((n_i * (rates - share) ** 2).sum()) / (count - 1)
    within = float((n_i * rates * (1.0 - rates)).sum()) / max(1.0, total - count)
    n0 = (total - float((n_i**2).sum()) / total) / (count - 1)
    denominator = between + (n0 - 1.0) * within
    rho = (between - within) / denominator if denominator > 0 else 0.0
    rho = min(max(rho, 0.0), 0.999)
    if rho <= 0.0:
        purer = float(binom.cdf(impure, size, share))
        mixed = float(binom.sf(impure - 1, size, share))
    else:
        scale = (1.0 - rho) / rho
        a, b = share * scale, (1.0 - share) * scale
        purer = float(betabinom.cdf(impure, size, a, b))
        mixed = float(betabinom.sf(impure - 1, size, a, b))
    return purer > alpha and mixed > alpha


def _unordered(top_labels: numpy.ndarray, alpha: float) -> bool:
    """Whether a number column's values, in their order, say nothing about the label: a code
    written as a number (gapminder's `iso_num`, ISO 3166 numbers given to countries in the
    order of their names). A measured number (a petal's width, a wine's magnesium) is one a
    model places among the values it saw, and neighbouring values share their label.

    `top_labels`: the dominant label of each level in value order, -1 for a level of fewer
    than `label_min_group_rows` rows (left out). The statistic is the number of neighbouring
    levels with the same dominant label; its null, the levels in a random order (a
    permutation test, PERMUTATIONS fixed-seed draws). Unordered when the test could show an
    order at `alpha` (the levels grouped by label would reach it) and does not; with too few
    levels to show one, not."""
    import numpy as np

    tops = np.asarray(top_labels)[np.asarray(top_labels) >= 0]
    if len(tops) < 2 * COLUMN_MIN_LEVELS:
        return False
    rng = np.random.default_rng(SEED)
    shuffled = rng.permuted(np.tile(tops, (PERMUTATIONS, 1)), axis=1)
    null = (shuffled[:, 1:] == shuffled[:, :-1]).sum(axis=1)
    grouped = len(tops) - len(np.unique(tops))  # every label's levels side by side
    if (1 + int((null >= grouped).sum())) / (1 + PERMUTATIONS) > alpha:
        return False  # no order could be shown
    observed = int((tops[1:] == tops[:-1]).sum())
    return (1 + int((null >= observed).sum())) / (1 + PERMUTATIONS) > alpha


def _is_pure(labels: numpy.ndarray, purity: float) -> bool:
    import numpy as np

    return bool(np.bincount(labels).max() >= purity * len(labels))


def _pairs(
    frame: LabelFrame,
    levels: list[tuple[str, numpy.ndarray, list[str], bool]],
    pure_levels: dict[str, set[int]],
    trigger_rows: int,
    consider: Any,
    options: DataOptions,
) -> None:
    """Two-value patterns on few rows (a trigger made of two values), skipping values that are
    already pure on their own; bounded by MAX_PAIR_WORK. A pair is a combination when each of
    its values is common outside it (PAIR_SUPPORT); else it is a test of one rare value, whose
    effect a model without it cannot know, unless the pair is far more frequent than its two
    values make likely (`_edited`): then rows were edited to carry both values, and the pair
    picks them out of a value that also occurs naturally on rows of other labels (a trigger
    whose rarer value is diluted by that value's own rows), or each value is on at least
    `label_min_group_rows` rows outside it: then the pair is a candidate only through the
    interaction test below, never by purity alone (a natural pair on most of a value's rows
    is as pure as the value: German Credit's `credit_history = existing credits paid back
    duly & other_debtors_or_guarantors = guarantor`, 91% 'good' on 34 of guarantor's 52
    rows). A pair under `label_group_purity` is passed to `consider` with its interaction
    p-value: the chance of its count of its label were each of its rows to carry that label
    at the larger of its shares among either value's rows outside the pair (find_candidates
    keeps it at `label_alpha` / 3 over the pairs scanned)."""
    import numpy as np
    from scipy.stats import binom, poisson

    n = len(frame.labels)
    usable = [item for item in levels if len(item[2]) <= PAIR_MAX_LEVELS]
    budget = MAX_PAIR_WORK
    compared = 0  # pairs of values on trigger-sized rows whose co-occurrence was looked at
    # (co-occurrence p, column a, column b, code, each value on enough rows outside the pair)
    rare: list[tuple[float, int, int, int, bool]] = []

    def pair(a: int, b: int, code: int) -> tuple[numpy.ndarray, tuple[tuple[str, str], ...]]:
        name_a, codes_a, names_a, _ = usable[a]
        name_b, codes_b, names_b, _ = usable[b]
        level_a, level_b = divmod(code, len(names_b))
        members = np.flatnonzero((codes_a == level_a) & (codes_b == level_b))
        return members, ((name_a, f"= {names_a[level_a]}"), (name_b, f"= {names_b[level_b]}"))

    labels = frame.labels
    k = int(labels.max()) + 1

    # rows of each label per value of each column
    by_label = [
        np.bincount(codes[codes >= 0] * k + labels[codes >= 0], minlength=len(names) * k).reshape(
            len(names), k
        )
        for _name, codes, names, _exact in usable
    ]

    def interaction(a: int, b: int, code: int, members: numpy.ndarray) -> Callable[[], float]:
        """P(at least the pair's count of its dominant label | each of its rows carries that
        label at the larger of its shares among value a's and value b's rows outside the
        pair): the label is tied to the combination, not to either value."""

        def p() -> float:
            level_a, level_b = divmod(code, len(usable[b][2]))
            counts = np.bincount(labels[members], minlength=k)
            label = int(counts.argmax())
            shares = []
            for table, level in ((by_label[a], level_a), (by_label[b], level_b)):
                rest = int(table[level].sum()) - len(members)
                mine = int(table[level, label]) - int(counts[label])
                shares.append(mine / rest if rest > 0 else 1.0)
            return float(binom.sf(counts[label] - 1, len(members), max(shares)))

        return p

    for a, b in itertools.combinations(range(len(usable)), 2):
        budget -= n
        if budget < 0:
            break
        name_a, codes_a, names_a, _ = usable[a]
        name_b, codes_b, names_b, _ = usable[b]
        both = (codes_a >= 0) & (codes_b >= 0)
        combined = np.where(both, codes_a * len(names_b) + codes_b, -1)
        counts = np.bincount(combined[both], minlength=len(names_a) * len(names_b))
        count_a = np.bincount(codes_a[codes_a >= 0], minlength=len(names_a))
        count_b = np.bincount(codes_b[codes_b >= 0], minlength=len(names_b))
        common = (np.repeat(count_a, len(names_b)) >= PAIR_SUPPORT * counts) & (
            np.tile(count_b, len(names_a)) >= PAIR_SUPPORT * counts
        )
        sized = (counts >= options.label_min_group_rows) & (counts <= trigger_rows)
        compared += int(sized.sum())
        small = np.flatnonzero((counts >= 1) & (counts <= trigger_rows) & common)
        for code in map(int, itertools.chain(small, np.flatnonzero(sized & ~common))):
            level_a, level_b = divmod(code, len(names_b))
            if level_a in pure_levels.get(name_a, ()) or level_b in pure_levels.get(name_b, ()):
                continue
            expected = count_a[level_a] * count_b[level_b] / n
            cooccurrence = float(poisson.sf(counts[code] - 1, expected))
            if not common[code]:
                # each value on enough rows outside the pair for its label share there
                outside = min(count_a[level_a], count_b[level_b]) - counts[code]
                supported = bool(outside >= options.label_min_group_rows)
                rare.append((cooccurrence, a, b, code, supported))
                continue
            members, pattern = pair(a, b, code)
            consider("pair", members, pattern, cooccurrence, interaction(a, b, code, members))
    for cooccurrence, a, b, code, supported in rare:
        if _edited(cooccurrence, compared, options):
            members, pattern = pair(a, b, code)
            consider("pair", members, pattern, cooccurrence, interaction(a, b, code, members))
        elif supported:
            members, pattern = pair(a, b, code)
            consider(
                "pair",
                members,
                pattern,
                cooccurrence,
                interaction(a, b, code, members),
                by_purity=False,
            )


def _edited(cooccurrence: float, compared: int, options: DataOptions) -> bool:
    """Whether a pair of values is far more frequent than its two values make likely: its
    co-occurrence p (Poisson, the two values independent) at most `label_alpha` shared by the
    three families and split over the `compared` pairs of values on trigger-sized rows
    (Bonferroni over the pairs compared; this test does not look at the labels, and a pair
    that passes it is scanned, and counted, like the other pairs). Natural associations pass
    it too (neighbouring pixels of one stroke): the label test decides."""
    return cooccurrence <= options.label_alpha / len(FAMILY_NAMES) / max(1, compared)


def _clusters(embedding: numpy.ndarray, n: int) -> list[numpy.ndarray]:
    import numpy as np
    from sklearn.cluster import MiniBatchKMeans

    out: list[numpy.ndarray] = []
    sizes = sorted({int(np.clip(round(n / 100), 4, 100)), int(np.clip(round(n / 30), 4, 100))})
    for k in sizes:
        if k >= n:
            continue
        model = MiniBatchKMeans(n_clusters=k, random_state=SEED, n_init=3, batch_size=min(4096, n))
        assigned = model.fit_predict(embedding)
        out.extend(np.flatnonzero(assigned == c) for c in range(k))
    return out


def _disagreement_regions(
    frame: LabelFrame, embedding: numpy.ndarray, learner: Learner, smallest: int
) -> list[numpy.ndarray]:
    """Neighbourhoods (the REGION_SIZES nearest rows, of any label) around seed rows and
    their nearest rows of the same label. Seeds are rows whose label two views of their
    surroundings disagree with: a linear model, cross-validated, gives another label (a flip
    planted in one region is learned back by a flexible model but not, at the region's edge,
    by a linear one), or most of their SEED_NEIGHBOURS nearest rows carry another label (a
    small planted region inside another label's territory). At most 20 * MAX_REGIONS
    centres, the strongest disagreements first; the purity filter and the test decide. A
    confirmed region is grown afterwards (grow)."""
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    labels = frame.labels
    n = len(labels)
    k = int(labels.max()) + 1
    linear = learner.linear_out_of_sample()
    thresholds = _confident_thresholds(labels, linear)
    other = linear.copy()
    other[np.arange(n), labels] = -1.0
    margin = (other - thresholds[None, :]).max(axis=1)
    sizes = sorted({max(smallest, size) for size in REGION_SIZES})
    reference = _sample(np.arange(n), 5 * KNN_REFERENCE_ROWS)
    width = min(max(sizes[-1], SEED_NEIGHBOURS + 1), len(reference))
    index = NearestNeighbors(n_neighbors=width).fit(embedding[reference])
    # the neighbourhood view: the share of another label among each row's nearest rows
    # (itself excluded), on at most KNN_REFERENCE_ROWS rows (a planted region keeps its
    # share of them)
    probe = _sample(np.arange(n), KNN_REFERENCE_ROWS)
    _dist, around = index.kneighbors(embedding[probe], n_neighbors=min(width, SEED_NEIGHBOURS + 1))
    around = reference[around]
    votes = np.zeros((len(probe), k))
    for column in range(around.shape[1]):
        neighbour = around[:, column]
        keep = neighbour != probe
        votes[np.flatnonzero(keep), labels[neighbour[keep]]] += 1.0
    votes /= np.maximum(votes.sum(axis=1, keepdims=True), 1.0)
    own_share = votes[np.arange(len(probe)), labels[probe]]
    knn_margin = np.full(n, -1.0)
    knn_margin[probe] = 0.5 - own_share
    linear_seeds = np.flatnonzero(margin >= 0)
    linear_seeds = linear_seeds[np.argsort(-margin[linear_seeds], kind="stable")]
    knn_seeds = np.flatnonzero(knn_margin > 0)
    knn_seeds = knn_seeds[np.argsort(-knn_margin[knn_seeds], kind="stable")]
    # the two views interleaved, so that neither crowds the other out of the budget
    merged = np.empty(len(linear_seeds) + len(knn_seeds), dtype=np.int64)
    order = np.argsort(
        np.concatenate([np.arange(len(linear_seeds)), np.arange(len(knn_seeds))]), kind="stable"
    )
    merged[:] = np.concatenate([linear_seeds, knn_seeds])[order]
    seeds = np.array(list(dict.fromkeys(merged.tolist()))[: 20 * MAX_REGIONS], dtype=np.int64)
    if not len(seeds):
        return []
    # centres: each seed and its nearest rows of the same label (a planted region's inside,
    # where a linear model agrees with the poison, is next to its edge, where it does not)
    _dist, near = index.kneighbors(embedding[seeds])
    near = reference[near][:, : sizes[0]]
    centres = [
        row
        for seed, rows in zip(seeds, near, strict=True)
        for row in rows[labels[rows] == labels[seed]]
    ]
    centres = list(dict.fromkeys(int(c) for c in centres))[: 20 * MAX_REGIONS]
    # a region is every row near a centre, whatever its label: which rows belong to it must
    # not depend on the labels the test is about
    _dist, balls = index.kneighbors(embedding[centres])
    balls = reference[balls]
    out: list[numpy.ndarray] = []
    for ball in balls:
        for size in sizes:
            if size <= len(ball):
                out.append(np.sort(ball[:size]))
    return out


def _sample(rows: numpy.ndarray, size: int) -> numpy.ndarray:
    import numpy as np

    if len(rows) <= size:
        return rows
    rng = np.random.default_rng(SEED)
    return np.sort(rng.choice(rows, size=size, replace=False))


# ------------------------------------------------------------------ leave-out test


def _confident_thresholds(labels: numpy.ndarray, probs: numpy.ndarray) -> numpy.ndarray:
    import numpy as np
    from cleanlab.count import get_confident_thresholds

    return np.asarray(get_confident_thresholds(labels, probs), dtype=np.float64)


def _among_other_labels_only(
    labels: numpy.ndarray,
    embedding: numpy.ndarray,
    candidates: Candidates,
    shell_index: tuple[Any, numpy.ndarray],
    options: DataOptions,
) -> Candidates:
    """The candidates without the pair triggers whose rows sit among rows of their own label
    (`unlike_its_neighbours`): the test would veto them after their leave-out fit, so they
    get none, and the fits go to the others."""
    import numpy as np

    n = len(labels)
    triggers = [
        i
        for i, candidate in enumerate(candidates.items)
        if candidate.kind == "pair" and _is_trigger(candidate, n, options)
    ]
    if not triggers:
        return candidates
    # one neighbour query for every row of these pairs (they overlap): the same shells
    index, reference = shell_index
    rows = np.unique(np.concatenate([candidates.items[i].positions for i in triggers]))
    _dist, near = index.kneighbors(embedding[rows])
    near = reference[near]
    references: dict[int, tuple[float, float]] = {}
    dropped = set()
    for i in triggers:
        candidate = candidates.items[i]
        around = near[np.searchsorted(rows, candidate.positions)].ravel()
        shell = np.setdiff1d(around, candidate.positions)
        if len(shell) and not among_other_labels(
            labels, embedding, shell, candidate.label, shell_index, references
        ):
            dropped.add(i)
    kept = [c for i, c in enumerate(candidates.items) if i not in dropped]
    return candidates._replace(items=kept)


def with_shells(
    candidates: list[Candidate], embedding: numpy.ndarray, shell_index: tuple[Any, numpy.ndarray]
) -> None:
    """The largest neighbourhoods' (REGION_SIZES[-1] rows) leave-out model is also trained
    without their shell (the nearest rows of their rows): a neighbourhood inside a larger
    planted place would otherwise be learned back from the planted rows next to it (a 50-row
    neighbourhood inside a 90-row planted ball was predicted with its planted label). A
    smaller neighbourhood inside a planted place is inside the largest one around its
    centre; holding out every region's shell filled the folds (a fold holds out at most 10%
    of the rows) and left a planted 18-row region untested."""
    import numpy as np

    largest = [
        i
        for i, candidate in enumerate(candidates)
        if candidate.kind == "region" and len(candidate.positions) >= REGION_SIZES[-1]
    ]
    if not largest:
        return
    # one neighbour query for every row of these regions (they overlap): the same shells
    index, reference = shell_index
    rows = np.unique(np.concatenate([candidates[i].positions for i in largest]))
    _dist, near = index.kneighbors(embedding[rows])
    near = reference[near]
    for i in largest:
        candidate = candidates[i]
        around = near[np.searchsorted(rows, candidate.positions)].ravel()
        candidates[i] = candidate._replace(held=np.union1d(candidate.positions, around))


def _held(candidate: Candidate) -> numpy.ndarray:
    return candidate.positions if candidate.held is None else candidate.held


def _pack(candidates: list[Candidate], labels: numpy.ndarray) -> list[list[int]]:
    """Candidates (by index) in at most MAX_LEAVE_OUT_FITS folds (up to four times as many on
    small sets); a fold holds out at most
        MAX_HELD_OUT of the rows and at most half of any label's rows."""
    import numpy as np

    n = len(labels)
    max_fits = int(np.clip(FIT_ROW_BUDGET // n, MIN_LEAVE_OUT_FITS, 4 * MAX_LEAVE_OUT_FITS))
    class_counts = np.bincount(labels)
    folds: list[list[int]] = []
    held: list[numpy.ndarray] = []
    for index, candidate in enumerate(candidates):
        placed = False
        for fold, mask in enumerate(held):
            rows = _held(candidate)
            if mask[rows].any():
                continue  # a fold's candidates are disjoint: each model lacks only them
            union = mask.copy()
            union[rows] = True
            if union.sum() > MAX_HELD_OUT * n:
                continue
            if (
                np.bincount(labels[union], minlength=len(class_counts))
                > MAX_HELD_OUT_LABEL * class_counts
            ).any():
                continue
            folds[fold].append(index)
            held[fold] = union
            placed = True
            break
        if not placed and len(folds) < max_fits:
            mask = np.zeros(n, dtype=bool)
            mask[_held(candidate)] = True
            folds.append([index])
            held.append(mask)
    return folds


def judge(
    frame: LabelFrame,
    learner: Learner,
    embedding: numpy.ndarray,
    shell_index: tuple[Any, numpy.ndarray],
    found: Candidates,
    folds: list[list[int]],
    thresholds: numpy.ndarray,
    options: DataOptions,
    location: Location,
) -> list[tuple[Finding, numpy.ndarray, numpy.ndarray, numpy.ndarray]]:
    """(finding, flagged positions, leave-out probabilities of the subgroup's rows, the
    subgroup's positions) for every candidate that passes the test, most significant first,
    skipping one whose flagged rows are mostly reported already."""
    import numpy as np

    candidates = found.items
    if not candidates:
        return []
    labels = frame.labels
    n = len(labels)
    hits: list[tuple[float, int, numpy.ndarray, numpy.ndarray, Candidate | None]] = []
    references: dict[int, tuple[float, float]] = {}  # per label, see unlike_its_neighbours
    pieces: dict[Any, Any] = {}  # nearest-row indexes, see taken_from_shell_label
    for fold in folds:
        held = np.zeros(n, dtype=bool)
        for index in fold:
            held[_held(candidates[index])] = True
        model = learner.fit(np.flatnonzero(~held))
        # a fold's candidates are disjoint: one prediction for all of them
        rows = np.concatenate([candidates[index].positions for index in fold])
        predicted = learner.predict(model, rows)
        start = 0
        for index in fold:
            candidate = candidates[index]
            probs = predicted[start : start + len(candidate.positions)]
            start += len(candidate.positions)
            own = labels[candidate.positions]
            observed = int((own != candidate.label).sum())
            expected = float((1.0 - probs[:, candidate.label]).sum())
            size = len(candidate.positions)
            if not _planted_effect(observed, expected, size):
                continue
            p_value = lower_tail(1.0 - probs[:, candidate.label], observed)
            cutoff = found.cutoff(candidate.kind, options.label_alpha)
            # a pair far more frequent than its two values make likely (rows edited to carry
            # it) needs the label evidence at the family-wise level only once
            edited = candidate.cooccurrence <= cutoff and p_value <= options.label_alpha
            if p_value > cutoff and not edited:
                continue
            # a level effect is a column value's: a place's rows of another label sit at
            # its edge, the farthest from the planted rows its model still sees
            level = options.label_alpha if candidate.kind in LEVEL_KINDS else None
            if follows_features(probs[:, candidate.label], own == candidate.label, level):
                continue
            enclosed = None
            if candidate.kind in ("region", "cluster") and not surrounded(
                labels, embedding, candidate, shell_index, references
            ):
                # the largest neighbourhood inside a larger planted place is surrounded by
                # planted rows: judged on the place together with its shell's rows of its
                # label (a smaller one was tested at the larger sizes around its centre)
                if candidate.kind != "region" or len(candidate.positions) < REGION_SIZES[-1]:
                    continue
                enclosed = enclosing_place(
                    labels, embedding, candidate, shell_index, references, options
                )
                if enclosed is None:
                    continue
            if candidate.kind == "region" and not taken_from_shell_label(
                labels,
                embedding,
                candidate if enclosed is None else enclosed,
                shell_index,
                pieces,
                options,
            ):
                continue
            if _is_trigger(candidate, n, options) and not (
                unlike_its_neighbours(labels, embedding, candidate, shell_index, references)
                and taken_from_shell_label(
                    labels, embedding, candidate, shell_index, pieces, options
                )
            ):
                continue
            hits.append((p_value, index, probs, np.array([observed, expected]), enclosed))
    hits.sort(key=lambda h: (h[0], -h[3][1], h[1]))
    results = []
    reported = np.zeros(n, dtype=bool)
    grown = 0
    levels: list[tuple[str, numpy.ndarray, list[str], bool]] | None = None
    for p_value, index, probs, (observed, expected), enclosed in hits:
        candidate = candidates[index]
        if enclosed is not None:
            # the larger place: its rows as a model that never saw it nor its shell sees them
            candidate = enclosed
            held = np.union1d(candidate.positions, _shell(embedding, candidate, shell_index))
            model = learner.fit(np.setdiff1d(np.arange(n), held))
            probs = learner.predict(model, candidate.positions)
            observed = int((labels[candidate.positions] != candidate.label).sum())
            expected = float((1.0 - probs[:, candidate.label]).sum())
            if not _planted_effect(observed, expected, len(candidate.positions)):
                continue  # the rows added are its label's own: the test no longer holds
            p_larger = lower_tail(1.0 - probs[:, candidate.label], observed)
            if p_larger > found.cutoff(candidate.kind, options.label_alpha):
                continue
            tested = p_larger
        else:
            tested = p_value
        inside: tuple[Candidate, int] | None = None
        if candidate.kind == "value" and LOCALISE:
            if levels is None:
                levels = _levels_of(frame)
            local = localise(
                frame, levels, candidate, probs, found.cutoff("value", options.label_alpha), options
            )
            if local is not None and (
                not _is_trigger(local[0], n, options)
                or (
                    unlike_its_neighbours(labels, embedding, local[0], shell_index, references)
                    and taken_from_shell_label(
                        labels, embedding, local[0], shell_index, pieces, options
                    )
                )
            ):
                inside = (candidate, local[5])
                candidate, probs, observed, expected, p_value, _examined = local
        own = labels[candidate.positions]
        if _is_trigger(candidate, n, options):
            # a planted pattern: every row of it that carries its label is a trigger row
            suspicious = own == candidate.label
        else:
            suspicious = (own == candidate.label) & _labels_otherwise(
                probs, candidate.label, thresholds
            )
        positions = candidate.positions[suspicious]
        if not len(positions) or reported[positions].mean() >= 0.5:
            continue
        if FAMILIES[candidate.kind] == "places":
            # the model's probabilities are the test's null: calibrated against natural
            # neighbourhoods of the place's size, which a model that cannot represent the
            # data's pockets finds as surprising (`calibrated`)
            p_calibrated = calibrated(
                frame, learner, embedding, shell_index, candidate, tested, pieces
            )
            if p_calibrated > found.cutoff(candidate.kind, options.label_alpha):
                continue
            if p_calibrated > tested:
                p_value = p_calibrated
        if candidate.kind in ("region", "cluster") and grown < MAX_GROWN:
            grown += 1
            candidate, probs, positions = grow(
                frame, learner, embedding, candidate, positions, thresholds
            )
        if len(positions) < options.label_min_group_rows:
            continue  # a few disagreeing rows close together: label noise, not a subgroup
        reported[positions] = True
        finding = _subgroup_finding(
            frame,
            candidate,
            positions,
            probs,
            int(observed),
            float(expected),
            p_value,
            found.scanned[FAMILIES[candidate.kind]] if inside is None else inside[1],
            options,
            location,
            None if inside is None else inside[0],
        )
        results.append((finding, positions, probs, candidate.positions))
    return results


def calibrated(
    frame: LabelFrame,
    learner: Learner,
    embedding: numpy.ndarray,
    shell_index: tuple[Any, numpy.ndarray],
    candidate: Candidate,
    p_value: float,
    pieces: dict[Any, Any],
) -> float:
    """The p-value of a place's (region's, cluster's, bin's) leave-out test, calibrated
    against the same test on natural neighbourhoods of its size (genomic control).

    The test's null is the leave-out model's probabilities: rows independent, each of another
    label with the probability the model gives it. A model that cannot represent the data's
    shape (a linear model on classes that overlap in pockets: glass2's two kinds of window
    glass) is wrong about every neighbourhood of that shape, not only about planted ones:
    natural neighbourhoods hold more (or fewer) rows of a label than it expects, far beyond
    its binomial variance, and a place found by searching them passes the test by
    construction. The excess is measured on CALIBRATION_PIECES neighbourhoods of the place's
    size around rows drawn in a fixed-seed order (of any label, like the regions searched;
    not centred in the place, at most half of their rows its), each judged exactly as the
    place: a model trained without it (and without its shell when the place was held out with
    its shell) predicts it, and z = (E - O) / sqrt(V) for the place's label (E, O: expected
    and observed rows of another label, V the Poisson-binomial variance). The inflation
    lambda = median(z^2) / 0.455 (the median of chi-square with 1 degree of freedom; the
    median, because a planted place among the neighbourhoods must not set it); with lambda
    above 1 the place's p-value becomes that of its normal deviate divided by sqrt(lambda).
    A model that fits the data gives lambda at most about 1 (its neighbourhoods are as
    variable as it says, most of them far from any boundary), and the p-value is unchanged.
    With fewer than CALIBRATION_MIN_PIECES neighbourhoods measured, unchanged."""
    import math

    import numpy as np
    from scipy.stats import chi2, norm
    from sklearn.neighbors import NearestNeighbors

    labels = frame.labels
    n = len(labels)
    size = len(candidate.positions)
    shelled = candidate.held is not None
    if "all" not in pieces:
        rows = _sample(np.arange(n), 5 * KNN_REFERENCE_ROWS)
        pieces["all"] = (NearestNeighbors().fit(embedding[rows]), rows)
    index, everyone = pieces["all"]
    if size >= len(everyone):
        return p_value
    inside = np.zeros(n, dtype=bool)
    inside[candidate.positions] = True
    order = np.random.default_rng(SEED).permutation(everyone)
    order = order[~inside[order]]
    chosen: list[numpy.ndarray] = []
    held: list[numpy.ndarray] = []
    for start in range(0, len(order), CALIBRATION_PIECES):
        if len(chosen) >= CALIBRATION_PIECES:
            break
        batch = order[start : start + CALIBRATION_PIECES]
        _dist, near = index.kneighbors(embedding[batch], n_neighbors=size)
        for ball in everyone[near]:
            if inside[ball].mean() > 0.5 or len(chosen) >= CALIBRATION_PIECES:
                continue
            ball = np.sort(ball)
            chosen.append(ball)
            if shelled:
                piece = candidate._replace(positions=ball)
                held.append(np.union1d(ball, _shell(embedding, piece, shell_index)))
            else:
                held.append(ball)
    if len(chosen) < CALIBRATION_MIN_PIECES:
        return p_value
    # disjoint pieces share a model, at most MAX_HELD_OUT of the rows held out per model
    folds: list[list[int]] = []
    masks: list[numpy.ndarray] = []
    for i, rows in enumerate(held):
        for fold, mask in zip(folds, masks, strict=True):
            if not mask[rows].any() and mask.sum() + len(rows) <= MAX_HELD_OUT * n:
                fold.append(i)
                mask[rows] = True
                break
        else:
            mask = np.zeros(n, dtype=bool)
            mask[rows] = True
            folds.append([i])
            masks.append(mask)
    z2: list[float] = []
    for fold, mask in zip(folds, masks, strict=True):
        model = learner.fit(np.flatnonzero(~mask))
        predicted = learner.predict(model, np.concatenate([chosen[i] for i in fold]))
        start = 0
        for i in fold:
            p_label = predicted[start : start + len(chosen[i]), candidate.label]
            start += len(chosen[i])
            observed = float((labels[chosen[i]] != candidate.label).sum())
            expected = float((1.0 - p_label).sum())
            variance = float((p_label * (1.0 - p_label)).sum())
            z2.append((expected - observed) ** 2 / max(variance, 1e-12))
    inflation = float(np.median(z2)) / float(chi2.ppf(0.5, 1))
    if inflation <= 1.0:
        return p_value
    deviate = float(norm.isf(max(p_value, 1e-300)))
    return float(norm.sf(deviate / math.sqrt(inflation)))


def _planted_effect(observed: int, expected: float, size: int) -> bool:
    """The effect size a planted subgroup shows: E >= 2·O + 3 and E - O >= EFFECT_SHARE of
    its rows."""
    return expected >= 2 * observed + 3 and expected - observed >= EFFECT_SHARE * size


def localise(
    frame: LabelFrame,
    levels: list[tuple[str, numpy.ndarray, list[str], bool]],
    candidate: Candidate,
    probs: numpy.ndarray,
    cutoff: float,
    options: DataOptions,
) -> tuple[Candidate, numpy.ndarray, int, float, float, int] | None:
    """The pair of the confirmed value `candidate` and a value W of another column whose rows
    hold the value's evidence, when the value is not planted as a whole: a trigger planted
    on rows of other labels with a value that also occurs naturally (German Credit:
    `purpose = education & foreign_worker = no`, 10 rows, inside the 47 rows of
    `foreign_worker = no`, whose 37 natural rows are 89% 'good'). Reporting the value
    flags its natural rows with the planted ones.

    W qualifies when, inside the value (`probs`: the probabilities of the value's leave-out
    model, which never saw the value), the pair is on at least `label_min_group_rows` and at
    most 1 / PAIR_SUPPORT of the value's rows (the rest of the value is its own natural
    part), (almost) all of its label (`label_group_purity`), shows the planted effect
    (`_planted_effect`) with a label-test p at most `label_alpha` / m, and is more frequent
    in the value than W's rate outside it makes likely (Poisson, at most `label_alpha` / m:
    rows edited to carry both values), m the values W examined; and the rest of the value
    without the pair would not be reported on its own (`_reported_alone`, at the value's
    `cutoff`): its purity or its evidence exists only because of the pair's rows. A value
    planted as a whole keeps its evidence in every part and is reported whole; a genuinely
    predictive value whose natural part is reported on its own, too. The most significant
    such pair by the label test; None when there is none. Returns (the pair, the leave-out
    probabilities of its rows, observed, expected, p, m). This only narrows a confirmed
    value's report: it never adds a finding."""
    import numpy as np
    from scipy.stats import poisson

    labels = frame.labels
    n = len(labels)
    value = candidate.positions
    label = candidate.label
    column = candidate.pattern[0][0]
    p_other = 1.0 - probs[:, label]
    other = labels[value] != label
    purity = options.label_group_purity
    examined = 0
    found: list[tuple[float, float, str, str, numpy.ndarray, int, float]] = []
    for name, codes, names, _exact in levels:
        if name == column or len(names) > PAIR_MAX_LEVELS:
            continue
        inside = codes[value]
        counts_in = np.bincount(inside[inside >= 0], minlength=len(names))
        counts_all = np.bincount(codes[codes >= 0], minlength=len(names))
        sized = (counts_in >= options.label_min_group_rows) & (
            PAIR_SUPPORT * counts_in <= len(value)
        )
        for level in map(int, np.flatnonzero(sized)):
            examined += 1
            mask = inside == level
            size = int(counts_in[level])
            observed = int(other[mask].sum())
            expected = float(p_other[mask].sum())
            if size - observed < purity * size or not _planted_effect(observed, expected, size):
                continue
            if _reported_alone(labels[value][~mask] == label, p_other[~mask], cutoff, options):
                continue  # the rest of the value looks planted too: report it whole
            outside = int(counts_all[level]) - size
            cooccurrence = float(
                poisson.sf(size - 1, len(value) * outside / max(1, n - len(value)))
            )
            p_value = lower_tail(p_other[mask], observed)
            found.append((p_value, cooccurrence, name, names[level], mask, observed, expected))
    bound = options.label_alpha / max(1, examined)
    passing = [item for item in found if item[0] <= bound and item[1] <= bound]
    if not passing:
        return None
    p_value, cooccurrence, name, level_name, mask, observed, expected = min(
        passing, key=lambda item: (item[0], item[2], item[3])
    )
    pair = Candidate(
        "pair",
        value[mask],
        label,
        (candidate.pattern[0], (name, f"= {level_name}")),
        candidate.prescore,
        cooccurrence,
    )
    return pair, probs[mask], observed, expected, p_value, examined


def _reported_alone(
    has_label: numpy.ndarray, p_other: numpy.ndarray, cutoff: float, options: DataOptions
) -> bool:
    """Whether rows of a value, with these leave-out probabilities of another label, would be
    reported as a value on their own: (almost) all one label, the planted effect, a p-value
    within `cutoff`, and not vetoed by `follows_features`."""
    size = len(has_label)
    observed = int((~has_label).sum())
    if size - observed < options.label_group_purity * size:
        return False
    if not _planted_effect(observed, float(p_other.sum()), size):
        return False
    if lower_tail(p_other, observed) > cutoff:
        return False
    return not follows_features(1.0 - p_other, has_label, options.label_alpha)


def grow(
    frame: LabelFrame,
    learner: Learner,
    embedding: numpy.ndarray,
    candidate: Candidate,
    flagged: numpy.ndarray,
    thresholds: numpy.ndarray,
) -> tuple[Candidate, numpy.ndarray, numpy.ndarray]:
    """A confirmed region is where the search started, not necessarily all of it: add the
    region's label's rows among the nearest neighbours of its flagged rows that a model trained
    without the grown region would label otherwise, and retrain, until nothing is added (at
    most GROW_STEPS times). Returns the grown candidate, the leave-out probabilities of its
    rows and the flagged rows."""
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    labels = frame.labels
    n = len(labels)
    same = np.flatnonzero(labels == candidate.label)
    reference = _sample(same, 5 * KNN_REFERENCE_ROWS)
    index = NearestNeighbors(n_neighbors=min(NEIGHBOURS, len(reference))).fit(embedding[reference])
    members = np.array(candidate.positions)
    for _step in range(GROW_STEPS):
        _d, near = index.kneighbors(embedding[flagged])
        fresh = np.setdiff1d(reference[near].ravel(), members)
        if not len(fresh) or len(members) + len(fresh) > GROW_MAX_SHARE * n:
            break
        model = learner.fit(np.setdiff1d(np.arange(n), members))
        probs = learner.predict(model, fresh)
        added = fresh[_labels_otherwise(probs, candidate.label, thresholds)]
        if not len(added):
            break
        members = np.union1d(members, added)
        flagged = np.union1d(flagged, added)
    model = learner.fit(np.setdiff1d(np.arange(n), members))
    probs = learner.predict(model, members)
    suspicious = (labels[members] == candidate.label) & _labels_otherwise(
        probs, candidate.label, thresholds
    )
    grown = candidate._replace(positions=members, pattern=(("region", f"{len(members)} rows"),))
    return grown, probs, members[suspicious]


def _labels_otherwise(probs: numpy.ndarray, label: int, thresholds: numpy.ndarray) -> numpy.ndarray:
    """Rows (of a confirmed subgroup) that a model trained without the subgroup would label
    otherwise: another label at least as likely as `label` (RELABEL == "likelier"), or above
    confident learning's per-class threshold ("confident")."""
    import numpy as np

    other = probs.copy()
    other[:, label] = -1.0
    if RELABEL == "likelier":
        return np.asarray(other.max(axis=1) >= probs[:, label], dtype=bool)
    return np.asarray((other >= thresholds[None, :]).any(axis=1), dtype=bool)


def _shell_index(embedding: numpy.ndarray) -> tuple[Any, numpy.ndarray]:
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    reference = _sample(np.arange(len(embedding)), 5 * KNN_REFERENCE_ROWS)
    width = min(2 * NEIGHBOURS, len(reference))
    return NearestNeighbors(n_neighbors=width).fit(embedding[reference]), reference


def surrounded(
    labels: numpy.ndarray,
    embedding: numpy.ndarray,
    candidate: Candidate,
    shell_index: tuple[Any, numpy.ndarray],
    references: dict[int, tuple[float, float]] | None = None,
) -> bool:
    """Whether a place in feature space (a region or cluster) sits inside another label's
    territory: one other label holds most rows of its shell (the nearest rows of its rows
    that are not in it), and its own label is as rare there as around rows of other labels
    (`among_other_labels`). A planted region is relabelled inside another label's territory;
    a natural cluster at the edge of the data, whose label a model trained without it
    extrapolates wrongly, is surrounded by rows of its own label, a natural cluster between
    several classes by a mixture, and a natural style of one label close to another label
    (a '1' shaped like another digit) by that label and many rows of its own."""
    import numpy as np

    shell = _shell(embedding, candidate, shell_index)
    if not len(shell):
        return False
    counts = np.bincount(labels[shell], minlength=candidate.label + 1)
    counts[candidate.label] = 0
    if counts.max() <= SHELL_OTHER_SHARE * len(shell):
        return False
    return among_other_labels(labels, embedding, shell, candidate.label, shell_index, references)


def enclosing_place(
    labels: numpy.ndarray,
    embedding: numpy.ndarray,
    candidate: Candidate,
    shell_index: tuple[Any, numpy.ndarray],
    references: dict[int, tuple[float, float]],
    options: DataOptions,
) -> Candidate | None:
    """For a confirmed place that is not `surrounded` because its own label fills its shell
    (its share there is on its own label's side of `among_other_labels`): the place with its
    shell's rows of its label, when that larger place is surrounded. A neighbourhood of 50
    rows inside a ball of 90 planted rows is surrounded by planted rows, the ball by the
    label it was taken from; a natural cluster inside its label's territory stays among its
    own label one step out as well. The larger place is a candidate like the others: (almost)
    all one label (`label_group_purity`), at most half of that label's rows. None
    otherwise."""
    import numpy as np

    shell = _shell(embedding, candidate, shell_index)
    if not len(shell) or among_other_labels(
        labels, embedding, shell, candidate.label, shell_index, references
    ):
        return None  # a mixture, or another label's place: not a planted place's inside
    mine = shell[labels[shell] == candidate.label]
    positions = np.union1d(candidate.positions, mine)
    same = int((labels[positions] == candidate.label).sum())
    if same < options.label_group_purity * len(positions) or len(positions) > 0.5 * int(
        (labels == candidate.label).sum()
    ):
        return None
    larger = candidate._replace(
        positions=positions,
        pattern=(("region", f"{len(candidate.positions) + len(mine)} rows"),),
    )
    if surrounded(labels, embedding, larger, shell_index, references):
        return larger
    return None


def taken_from_shell_label(
    labels: numpy.ndarray,
    embedding: numpy.ndarray,
    candidate: Candidate,
    shell_index: tuple[Any, numpy.ndarray],
    pieces: dict[Any, Any],
    options: DataOptions,
) -> bool:
    """Whether a surrounded region's (or a trigger's) rows of its label could have been taken
    from the label around them (the other label holding most of their shell): they are no
    farther from that label's rows outside the subgroup, relative to their spacing among
    themselves (`gap`), than rows of that label are in pieces of its own territory of the
    same size.

    Rows planted in a region are cut out of the surrounding label's territory: the rows of
    that label just outside are as close to them as that label's rows are to one another,
    whatever the labels of the rest of the data. Trigger rows are drawn from other labels'
    rows, scattered: far apart from one another, close to rows of their own labels. A
    natural style of the subgroup's label next to another label (a '1' drawn with a base,
    among '2's) is a mode of its own: its rows are close to one another and a gap away from
    the other label. Random label flips do not change the distances, but they lower the
    shares of its label that `among_other_labels` compares (on digits with 10% random
    labels, such a region's shell, 21% '1' and 68% '2', fell on the planted side of the
    references, 71% and 4%), and the leave-out model trained without the style expects the
    other label for it.

    A Monte Carlo test at `label_alpha`: the gap of the region's rows of its label against
    the gaps of the rows of the shell's label in D = ceil(1 / label_alpha) - 1 pieces of
    that label's territory: neighbourhoods of the region's size (of any label, like the
    regions searched) around rows of that label drawn in a fixed-seed order, skipping one
    with fewer than two rows of that label (a row of it flipped into another label's
    territory). The region is not taken from that label when P = (1 + pieces whose gap is
    at least as large) / (1 + D) <= label_alpha, i.e. its gap is larger than every piece's
    at the default 0.01: a region cut from that label fails this with probability at most
    label_alpha. With fewer than D pieces (a label of few rows), or fewer than two rows to
    measure, it is taken."""
    import math

    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    shell = _shell(embedding, candidate, shell_index)
    if not len(shell):
        return True
    counts = np.bincount(labels[shell], minlength=int(labels.max()) + 1)
    counts[candidate.label] = 0
    other = int(counts.argmax())
    positions = candidate.positions
    members = positions[labels[positions] == candidate.label]
    draws = math.ceil(1.0 / options.label_alpha) - 1
    if len(members) < 2:
        return True
    if other not in pieces:
        rows = _sample(np.flatnonzero(labels == other), 5 * KNN_REFERENCE_ROWS)
        pieces[other] = (NearestNeighbors().fit(embedding[rows]), rows)
    if "all" not in pieces:
        rows = _sample(np.arange(len(labels)), 5 * KNN_REFERENCE_ROWS)
        pieces["all"] = (NearestNeighbors().fit(embedding[rows]), rows)
    observed = gap(embedding, positions, members, pieces[other])
    order = np.random.default_rng(SEED).permutation(pieces[other][1])
    index, everyone = pieces["all"]
    size = min(len(positions), len(everyone))
    gaps: list[float] = []
    for start in range(0, len(order), draws):
        if len(gaps) >= draws:
            break
        _dist, near = index.kneighbors(embedding[order[start : start + draws]], n_neighbors=size)
        for ball in everyone[near]:
            ball = np.sort(ball)
            own = ball[labels[ball] == other]
            if len(own) >= 2 and len(gaps) < draws:
                gaps.append(gap(embedding, ball, own, pieces[other]))
    if len(gaps) < draws:
        return True  # too few pieces of its territory to reach P <= label_alpha
    p = (1 + sum(value >= observed for value in gaps)) / (1 + len(gaps))
    return p > options.label_alpha


def gap(
    embedding: numpy.ndarray,
    positions: numpy.ndarray,
    members: numpy.ndarray,
    other: tuple[Any, numpy.ndarray],
) -> float:
    """How far `members` (rows of a place at `positions`) are from the rows of another label
    outside the place, relative to their spacing: the median distance from a member to the
    nearest row of `other` (an index over that label's rows, and their positions) not in the
    place, over the median distance from a member to the nearest other member."""
    import numpy as np
    from sklearn.metrics import pairwise_distances

    index, rows = other
    k = min(len(rows), len(positions) + 1)  # at least one of them is outside the place
    dist, near = index.kneighbors(embedding[members], n_neighbors=k)
    dist = np.where(np.isin(rows[near], positions), np.inf, dist).min(axis=1)
    dist = dist[np.isfinite(dist)]
    within = pairwise_distances(embedding[members])
    np.fill_diagonal(within, np.inf)
    spacing = float(np.median(within.min(axis=1)))
    if not len(dist):
        return 0.0
    return float(np.median(dist)) / max(spacing, 1e-12)


def unlike_its_neighbours(
    labels: numpy.ndarray,
    embedding: numpy.ndarray,
    candidate: Candidate,
    shell_index: tuple[Any, numpy.ndarray],
    references: dict[int, tuple[float, float]] | None = None,
) -> bool:
    """Whether a trigger's rows are, apart from the pattern, like rows of other labels: their
    nearest rows outside the pattern carry its label as rarely as rows of other labels see it
    around them (`among_other_labels`). Rows planted with a trigger come from other labels; a
    rare value that genuinely marks one label (a handwriting style of one digit) sits among
    rows of that label."""
    shell = _shell(embedding, candidate, shell_index)
    if not len(shell):
        return True
    return among_other_labels(labels, embedding, shell, candidate.label, shell_index, references)


def _shell(
    embedding: numpy.ndarray, candidate: Candidate, shell_index: tuple[Any, numpy.ndarray]
) -> numpy.ndarray:
    """The nearest rows of a subgroup's rows that are not in it."""
    import numpy as np

    index, reference = shell_index
    _dist, near = index.kneighbors(embedding[candidate.positions])
    return np.setdiff1d(reference[near].ravel(), candidate.positions)


def among_other_labels(
    labels: numpy.ndarray,
    embedding: numpy.ndarray,
    shell: numpy.ndarray,
    label: int,
    shell_index: tuple[Any, numpy.ndarray],
    references: dict[int, tuple[float, float]] | None = None,
) -> bool:
    """Whether `label`'s share among the shell's rows is closer, on the log-odds scale, to
    the share of `label` around rows of other labels than to its share around its own rows
    (`label_neighbour_shares`, cached per label in `references`). The two references make the
    test fit each dataset: on well-separated classes a shell that is 40% one label (a style
    of '1' close to another digit, where rows of other digits see 2% of '1's and rows of '1'
    90%) is that label's place, while on overlapping classes (credit data: 65% and 78%) a
    share of 62% is other labels' place; random label noise moves both references with it."""
    if references is None:
        references = {}
    if label not in references:
        references[label] = label_neighbour_shares(labels, embedding, shell_index, label)
    own, others = references[label]
    share = float((labels[shell] == label).mean())
    floor = 0.5 / len(shell)  # a share of 0 or 1 on a finite shell, kept finite
    return bool(_logit(share, floor) < (_logit(own, floor) + _logit(others, floor)) / 2)


def label_neighbour_shares(
    labels: numpy.ndarray,
    embedding: numpy.ndarray,
    shell_index: tuple[Any, numpy.ndarray],
    label: int,
) -> tuple[float, float]:
    """(share of `label` among the nearest rows of its own rows, share of `label` among the
    nearest rows of other labels' rows), on at most NEIGHBOUR_SHARE_ROWS rows per label, the
    other labels weighted by their number of rows."""
    import numpy as np

    index, reference = shell_index
    own = 0.0
    others = 0.0
    other_rows = 0
    for value in np.unique(labels):
        members = np.flatnonzero(labels == value)
        rows = _sample(members, NEIGHBOUR_SHARE_ROWS)
        _dist, near = index.kneighbors(embedding[rows])
        near = reference[near]
        keep = near != rows[:, None]  # not the row itself
        share = float(((labels[near] == label) & keep).sum() / max(1, int(keep.sum())))
        if value == label:
            own = share
        else:
            others += share * len(members)
            other_rows += len(members)
    return own, others / other_rows if other_rows else 0.0


def _logit(share: float, floor: float) -> float:
    import math

    share = min(max(share, floor), 1.0 - floor)
    return math.log(share / (1.0 - share))


def follows_features(
    p_label: numpy.ndarray, has_label: numpy.ndarray, alpha: float | None = None
) -> bool:
    """Whether the subgroup's labels still follow its rows' features: its rows of another
    label are the ones the leave-out model finds least likely to carry its label. Then the
    subgroup is a level effect the model could not learn without seeing it (a legitimately
    predictive value: its few rows of another label are the ones whose other columns point
    furthest the other way), not labels planted regardless of the features. With at least
    FOLLOWS_MIN_OTHERS rows of another label: a ranking AUC of at least FOLLOWS_AUC. With
    fewer, the AUC alone is chance (two rows against 50 give 0, 0.5 or 1): given `alpha` (a
    subgroup defined by column values, LEVEL_KINDS), the veto needs them to rank that low
    with probability at most `alpha` (`bottom_ranks`); without it (a place in feature space,
    whose rows of another label are at its edge, the farthest from the planted rows its
    leave-out model still sees: a planted region's two unflipped neighbours), no veto."""
    import numpy as np
    from scipy.stats import rankdata

    others = int((~has_label).sum())
    mine = int(has_label.sum())
    if not others or not mine:
        return False
    if others < FOLLOWS_MIN_OTHERS:
        return alpha is not None and bottom_ranks(p_label, has_label) <= alpha
    ranks = rankdata(p_label)
    auc = (ranks[has_label].sum() - mine * (mine + 1) / 2) / (mine * others)
    return bool(np.isfinite(auc) and auc >= FOLLOWS_AUC)


def bottom_ranks(p_label: numpy.ndarray, has_label: numpy.ndarray) -> float:
    """The chance that the subgroup's m rows of another label rank as low as they do by
    `p_label` (ties ranked high), were they any m of the rows the leave-out model expects to
    carry another label: the M = round(sum(1 - p_label)) least likely rows, where flipped
    and unflipped rows of a planted subgroup both sit. C(r, m) / C(M, m) for r the highest of
    their ranks (1 when r > M). A level effect leaves another label on the most extreme of
    those rows only: 4 rows at the bottom of 28 expected give p = 5e-5; 1 row at the bottom
    of 25, p = 1/25."""
    from scipy.stats import rankdata

    others = int((~has_label).sum())
    highest = int(rankdata(p_label, method="max")[~has_label].max())
    expected = max(highest, round(float((1.0 - p_label).sum())))
    p = 1.0
    for i in range(others):
        p *= (highest - i) / (expected - i)
    return p


def _is_trigger(candidate: Candidate, n: int, options: DataOptions) -> bool:
    return candidate.kind in ("value", "pair") and len(candidate.positions) <= max(
        options.label_min_group_rows, options.label_trigger_max_share * n
    )


def lower_tail(p_other: numpy.ndarray, observed: int) -> float:
    """P(X <= observed) for X the number of rows with another label when row i has one with
    probability p_other[i] (Poisson-binomial; exact up to EXACT_TAIL_ROWS rows, a normal
    approximation with continuity correction beyond)."""
    import numpy as np
    from scipy.stats import norm

    p = np.clip(np.asarray(p_other, dtype=np.float64), 0.0, 1.0)
    if len(p) > EXACT_TAIL_ROWS:
        mean = float(p.sum())
        sd = float(np.sqrt((p * (1 - p)).sum())) or 1e-12
        return float(norm.cdf((observed + 0.5 - mean) / sd))
    # dist[j] = P(j rows with another label so far), kept for j <= observed only
    dist = np.zeros(observed + 1)
    dist[0] = 1.0
    for value in p:
        shifted = np.empty_like(dist)
        shifted[0] = 0.0
        shifted[1:] = dist[:-1]
        dist = dist * (1.0 - value) + shifted * value
    return float(min(1.0, dist.sum()))


def _subgroup_finding(
    frame: LabelFrame,
    candidate: Candidate,
    positions: numpy.ndarray,
    probs: numpy.ndarray,
    observed: int,
    expected: float,
    p_value: float,
    scanned: int,
    options: DataOptions,
    location: Location,
    inside: Candidate | None = None,
) -> Finding:
    from bastion.datacheck.labels import _rows_finding, _text

    n = len(frame.labels)
    size = len(candidate.positions)
    label = _text(frame.classes[candidate.label])
    described = describe(frame, candidate)
    is_trigger = _is_trigger(candidate, n, options)
    rule = BACKDOOR if is_trigger else TARGETED_FLIPS
    where = (
        Location(path=location.path, pointer=f"column:{candidate.pattern[0][0]}")
        if candidate.kind in ("value", "pair", "bin")
        else location
    )
    evidence = (
        f"{'trigger' if is_trigger else 'subgroup'}: {described}; target label {label!r} on "
        f"{size - observed} of {size} rows; a model that never saw them expects {expected:.1f} "
        f"with another label (observed {observed}; p={p_value:.1e} against a bound for "
        f"{scanned} {FAMILIES[candidate.kind]} scanned); {len(positions)} rows flagged"
    )
    if inside is not None:
        evidence = (
            f"{'trigger' if is_trigger else 'subgroup'}: {described}; target label {label!r} "
            f"on {size - observed} of {size} rows; found inside {describe(frame, inside)} "
            f"({len(inside.positions)} rows, confirmed as a whole; without this pair its "
            f"rows are not reported): a model that never saw that value expects "
            f"{expected:.1f} with another label (observed {observed}; p={p_value:.1e} against "
            f"a bound for {scanned} pairs inside it; the pair is more frequent there than "
            f"elsewhere, a sign of edited rows); {len(positions)} rows flagged"
        )
    if is_trigger:
        message = (
            f"backdoor trigger: {size} rows with {described} all carry {label!r} though "
            f"their other columns point elsewhere; {len(positions)} rows flagged"
        )
    else:
        message = (
            f"targeted label flips: the {candidate.kind} {described} is labelled {label!r} "
            f"on {size - observed} of {size} rows where a model that never saw it expects "
            f"{expected:.0f} rows of another label; {len(positions)} rows flagged"
        )
    return _rows_finding(
        rule,
        where,
        message,
        evidence,
        rows=tuple(int(r) for r in frame.rows[positions]),
        ids=frame.ids(positions),
    )


def describe(frame: LabelFrame, candidate: Candidate) -> str:
    """The pattern as text; for clusters and regions, the column values (at most 4) that at
    least 90% of the subgroup shares and at most half of all rows do."""
    import numpy as np

    from bastion.datacheck.labels import _text

    if candidate.kind in ("value", "pair", "bin"):
        return " & ".join(f"{_text(c)} {_text(v)}" for c, v in candidate.pattern)
    shared: list[str] = []
    for name, codes, names, _exact in _levels_of(frame):
        inside = codes[candidate.positions]
        inside = inside[inside >= 0]
        if not len(inside):
            continue
        top = int(np.bincount(inside).argmax())
        if (inside == top).sum() >= 0.9 * len(candidate.positions) and (codes == top).mean() <= 0.5:
            shared.append(f"{_text(name)} = {_text(names[top])}")
        if len(shared) == 4:
            break
    detail = ", ".join(shared) if shared else "no single shared value"
    return f"of {len(candidate.positions)} rows ({detail})"


# ------------------------------------------------------------------ duplicates and outliers


def conflicting_duplicates(
    frame: LabelFrame, location: Location
) -> tuple[Finding, numpy.ndarray] | None:
    import numpy as np

    from bastion.datacheck.labels import _rows_finding

    parts = []
    if frame.numeric.shape[1]:
        values = frame.numeric
        spread = np.nanstd(values, axis=0)
        spread[~(spread > 0)] = 1.0
        quantised = np.round(values / (0.01 * spread))
        quantised[np.isnan(quantised)] = np.iinfo(np.int64).min
        parts.append(quantised.astype(np.int64))
    if frame.categorical.shape[1]:
        parts.append(frame.categorical)
    keys = np.ascontiguousarray(np.hstack(parts))
    view = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).ravel()
    _uniq, group, sizes = np.unique(view, return_inverse=True, return_counts=True)
    in_duplicates = sizes[group] > 1
    # when the modelled columns do not tell rows apart (few coarse columns), equal rows are
    # categories, not copies
    if in_duplicates.mean() > 0.2:
        return None
    k = len(frame.classes)
    candidates = np.flatnonzero(in_duplicates)
    if not len(candidates):
        return None
    counts = np.zeros((len(sizes), k), dtype=np.int64)
    np.add.at(counts, (group[candidates], frame.labels[candidates]), 1)
    conflicting = (counts > 0).sum(axis=1) > 1
    rows_flagged: list[int] = []
    groups = 0
    for position in candidates:
        g = group[position]
        if not conflicting[g]:
            continue
        mine = counts[g, frame.labels[position]]
        top = counts[g].max()
        if mine < top or (counts[g] == top).sum() > 1:
            rows_flagged.append(int(position))
    if not rows_flagged:
        return None
    groups = int(conflicting.sum())
    positions = np.array(sorted(rows_flagged))
    finding = _rows_finding(
        CONFLICTING_DUPLICATES,
        location,
        f"{groups} groups of near-duplicate rows carry conflicting labels; "
        f"{len(positions)} rows hold the minority (or a tied) label",
        f"{groups} conflicting groups; {len(positions)} rows flagged",
        rows=tuple(int(r) for r in frame.rows[positions]),
        ids=frame.ids(positions),
    )
    return finding, positions


def wrong_class_outliers(
    frame: LabelFrame, embedding: numpy.ndarray, location: Location
) -> tuple[Finding, numpy.ndarray] | None:
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    from bastion.datacheck.labels import _rows_finding

    labels = frame.labels
    n = len(labels)
    k_classes = len(frame.classes)
    distance = np.full((n, k_classes), np.inf)
    for label in range(k_classes):
        members = np.flatnonzero(labels == label)
        reference = _sample(members, KNN_REFERENCE_ROWS)
        k = min(NEIGHBOURS, len(reference) - 1)
        if k < 2:
            continue
        index = NearestNeighbors(n_neighbors=k + 1).fit(embedding[reference])
        dist, found = index.kneighbors(embedding)
        self_match = reference[found] == np.arange(n)[:, None]
        dist = np.where(self_match, np.nan, dist)
        distance[:, label] = np.nanmean(np.sort(dist, axis=1)[:, :k], axis=1)
    own = distance[np.arange(n), labels]
    others = distance.copy()
    others[np.arange(n), labels] = np.inf
    nearest_other = others.min(axis=1)
    outlier = np.zeros(n, dtype=bool)
    for label in range(k_classes):
        members = labels == label
        if members.sum() < 20:
            continue
        cut = np.nanquantile(own[members], 0.99)
        outlier |= members & (own > cut)
    flagged = outlier & (own >= 2.0 * nearest_other)
    if not flagged.any():
        return None
    overall = NearestNeighbors(n_neighbors=min(NEIGHBOURS + 1, n)).fit(embedding)
    _d, near = overall.kneighbors(embedding[flagged])
    positions = np.flatnonzero(flagged)
    same = (labels[near] == labels[positions][:, None]) & (near != positions[:, None])
    positions = positions[~same.any(axis=1)]
    if not len(positions):
        return None
    finding = _rows_finding(
        WRONG_CLASS_OUTLIERS,
        location,
        f"{len(positions)} rows are outliers of their own label inside another label's "
        "region (no nearest neighbour shares their label)",
        f"{len(positions)} rows; each at least twice as far from its own label's rows as "
        "from another label's, beyond its label's 99th percentile",
        rows=tuple(int(r) for r in frame.rows[positions]),
        ids=frame.ids(positions),
    )
    return finding, positions


def _number(value: float) -> str:
    return f"{value:.6g}"
