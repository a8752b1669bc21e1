"""Which split each record goes to: records grouped so that nothing a model could learn a test
answer from crosses splits, groups assigned to splits (seeded, stratified by kind, facts held out
for the test), and the independent check of the result (leakage_check)."""

from __future__ import annotations

import math

import numpy as np

from .split_options import SPLITS, SplitOptions
# Per-record data lives in numpy arrays (a million records are a few arrays of a few MB, not
# millions of Python objects).


def connected_components(n: int, links: np.ndarray) -> np.ndarray:
    """Component of each of `n` items joined by `links` (pairs of item indices), named by the
    smallest index in it.

    Union-find on whole arrays: each round hooks the larger root of every link that joins two
    components under the smaller one, then pointer jumping points every item at its root.
    Roots only ever point at smaller indices, so a component's root is its smallest index."""
    parent = np.arange(n)
    a, b = links[:, 0], links[:, 1]
    while True:
        root_a, root_b = parent[a], parent[b]
        apart = root_a != root_b
        if not apart.any():
            return parent
        a, b, root_a, root_b = a[apart], b[apart], root_a[apart], root_b[apart]
        np.minimum.at(parent, np.maximum(root_a, root_b), np.minimum(root_a, root_b))
        while True:
            grandparent = parent[parent]
            if np.array_equal(grandparent, parent):
                break
            parent = grandparent


def first_with_same_key(keys: np.ndarray) -> np.ndarray:
    """For each item, the index of the first item with the same key."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first[inverse]


def group_records(group_keys: np.ndarray, exact_keys: np.ndarray, near_pairs: np.ndarray) -> np.ndarray:
    """Component id per record (the smallest record index in it): records are together when
    they share a group key or a normalised text, or when their texts are near duplicates."""
    n = len(group_keys)
    index = np.arange(n)
    links = np.concatenate(
        [
            np.stack([first_with_same_key(group_keys), index], axis=1),
            np.stack([first_with_same_key(exact_keys), index], axis=1),
            np.asarray(near_pairs, dtype=np.int64).reshape(-1, 2),
        ]
    )
    return connected_components(n, links)


FREE = -1


def fact_roles(fact_keys: np.ndarray, probes: np.ndarray, options: SplitOptions) -> np.ndarray:
    """The split each record is bound to by its fact (FREE, or an index into SPLITS): a seeded
    `unseen_fraction` of the facts that have a probe go to test whole; the probes of the next
    `probe_fraction` go to test and those facts' other records to training, except that the
    probes of a `valid_probe_fraction` of those facts go to validation instead. `fact_keys` are
    integer codes, -1 for a record of no fact."""
    forced = np.full(len(fact_keys), FREE, dtype=np.int8)
    probed_facts = np.unique(fact_keys[probes & (fact_keys >= 0)])
    if not len(probed_facts):
        return forced
    order = probed_facts[np.random.default_rng(options.seed + 2).permutation(len(probed_facts))]
    n_unseen = int(round(options.unseen_fraction * len(order)))
    n_probe = int(round(options.probe_fraction * len(order)))
    unseen, probed = order[:n_unseen], order[n_unseen : n_unseen + n_probe]
    test, valid, train = SPLITS.index("test"), SPLITS.index("valid"), SPLITS.index("train")
    in_probed = np.isin(fact_keys, probed)
    forced[in_probed] = train
    forced[in_probed & probes] = test
    validated = probed[: int(round(options.valid_probe_fraction * len(probed)))]
    forced[np.isin(fact_keys, validated) & probes] = valid
    forced[np.isin(fact_keys, unseen)] = test
    return forced


def assign_splits(
    components: np.ndarray, kinds: np.ndarray, options: SplitOptions, forced: np.ndarray | None = None
) -> np.ndarray:
    """Seeded assignment of whole components to splits, stratified by kind; returns each
    record's split as an index into SPLITS. `kinds` are integer codes in the order of the
    kinds' names; `forced` (fact_roles) binds records to a split: a component goes to test if
    any of its records must, else to train if any must, else it is free.

    Free components are shuffled, then each goes to the split furthest below its target share
    of that kind's records, so every kind is spread over train, valid and test in proportion.
    """
    _, member_of, sizes = np.unique(components, return_inverse=True, return_counts=True)
    bound = np.full(len(sizes), FREE, dtype=np.int8)
    if forced is not None:
        np.maximum.at(bound, member_of, forced)  # test (2) over valid (1) over train (0) over free (-1)
    n_kinds = int(kinds.max()) + 1
    kind_counts = np.bincount(member_of * n_kinds + kinds, minlength=len(sizes) * n_kinds).reshape(len(sizes), n_kinds)
    dominant = kind_counts.argmax(axis=1)  # a tie goes to the kind first by name
    rng = np.random.default_rng(options.seed)
    shares = [options.fractions[s] for s in SPLITS]
    split_of_component = np.zeros(len(sizes), dtype=np.int8)
    for kind in np.unique(dominant):
        stratum = np.flatnonzero((dominant == kind) & (bound == FREE))  # its free components, smallest id first
        order = stratum[rng.permutation(len(stratum))]
        order_sizes = sizes[order].tolist()
        total = sum(order_sizes)
        filled = [0] * len(SPLITS)
        targets = []
        for size in order_sizes:  # sequential: each choice depends on the ones before it
            target = max(
                range(len(SPLITS)), key=lambda s: (shares[s] * total - filled[s]) if shares[s] > 0 else -math.inf
            )
            filled[target] += size
            targets.append(target)
        split_of_component[order] = targets
    split_of_component[bound != FREE] = bound[bound != FREE]
    return split_of_component[member_of]


def leakage_check(
    assignment, group_keys, exact_keys, near_pairs: np.ndarray, threshold: float, question_keys=None
) -> dict:
    """Count what crosses splits: group keys, exact duplicate texts, near-duplicate pairs, and
    normalised questions (one question asked in two splits; "" is no question).

    Checks the final assignment itself (split names or indices, one per record), independently
    of how the groups were formed."""
    split_of = np.unique(np.asarray(assignment), return_inverse=True)[1].ravel()

    def crossing(keys):
        key_of = np.unique(np.asarray(keys), return_inverse=True)[1].ravel()
        seen = np.unique(key_of * len(SPLITS) + split_of)  # each (key, split) once
        return int((np.bincount(seen // len(SPLITS)) > 1).sum())

    across = near_pairs[split_of[near_pairs[:, 0]] != split_of[near_pairs[:, 1]]] if len(near_pairs) else near_pairs
    questions_across = 0
    if question_keys is not None:
        asked = np.asarray(question_keys) != ""
        # a record of no question gets a key of its own, which no folded question can equal
        questions_across = crossing(
            np.where(asked, question_keys, np.char.add("\x00", np.arange(len(asked)).astype(str)))
        )
    result = {
        "groups_across_splits": crossing(group_keys),
        "questions_across_splits": questions_across,
        "exact_duplicates_across_splits": crossing(exact_keys),
        "near_duplicate_pairs_across_splits": int(len(across)),
        "near_duplicate_pairs_checked": int(len(near_pairs)),
        "near_duplicate_threshold": threshold,
    }
    result["passed"] = not any(
        (result["groups_across_splits"], result["exact_duplicates_across_splits"], len(across), questions_across)
    )
    if len(across):
        result["examples"] = across[:10].tolist()
    return result
