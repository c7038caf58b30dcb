"""Phase transfer: label every frame of a video by aligning it to labelled references (issue 16).

For each reference r, the exact DTW path of the query q against r (squared Euclidean cost of
their embeddings) matches each frame i of q with one or more consecutive frames of r; r votes
for the label of the middle one of them (frames of r labelled < 0 do not vote). Frame i takes
the label with the most votes over the references (ties: the smaller label), and its
confidence is that label's share of the votes cast:

    votes[i, k] = #{r : label_r(mid_r(i)) = k},   phase[i] = argmax_k votes[i, k]

A model whose embeddings follow what happens in a video transfers its references' phases; the
time-stretch baseline (frame i of L is i / L) transfers them by the frame's place in its video.
The accuracy on a labelled split (:func:`phase_transfer_accuracy`) is one of the evaluation's
metrics, with that baseline beside it.

A query that shows only part of what the references show (a clip) is matched with the part of
each reference it fits best instead (``subsequence=True``: subsequence DTW, the reference's
first and last frame matched are free); mid_r(i) is then read off that path.

Shapes: a query (Tq, D); references [(Tr, D)], their labels [(Tr,)] int.
"""

from __future__ import annotations

import numpy as np

from lrprop.core.dtw import dtw_paths_to_many, middle_matches
from lrprop.core.dtw_long import dtw_subsequence_path_long, sqeuclidean_rows

__all__ = ["matched_frames", "phase_transfer_accuracy", "phase_votes", "transfer_phases"]


def matched_frames(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(Tq,) int64: for each frame of ``query``, the middle of the frames of ``reference`` its
    exact DTW path matches with it (squared Euclidean cost)."""
    return middle_matches(dtw_paths_to_many(query, [reference])[0][0], len(query))


def _subsequence_matches(query: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(Tq,) int64: for each frame of ``query``, the middle of the frames of ``reference`` that
    its subsequence DTW path in ``reference`` matches with it (squared Euclidean cost)."""
    if len(query) > len(reference):
        raise ValueError(f"a query of {len(query)} frames is longer than a reference of {len(reference)}: a subsequence "
                         "match finds the query in a part of each reference")  # fmt: skip
    path, _, _, _ = dtw_subsequence_path_long(sqeuclidean_rows(reference, query), len(reference), len(query))
    return middle_matches(path[:, ::-1], len(query))  # (query frame, reference frame) rows


def phase_votes(
    query: np.ndarray,
    references: list[np.ndarray],
    reference_labels: list[np.ndarray],
    num_phases: int,
    *,
    subsequence: bool = False,
) -> np.ndarray:
    """(Tq, num_phases) int64: ``votes[i, k]``, the references that give frame i label k (see the
    module); ``subsequence``: the query is matched with a part of each reference."""
    if len(references) != len(reference_labels) or not references:
        raise ValueError(f"need one label array per reference, and a reference: {len(references)}, {len(reference_labels)}")
    votes = np.zeros((len(query), num_phases), dtype=np.int64)
    for ref, labels in zip(references, reference_labels, strict=True):
        if len(labels) != len(ref):
            raise ValueError(f"a reference of {len(ref)} frames has {len(labels)} labels")
    if subsequence:
        matches = [_subsequence_matches(query, ref) for ref in references]
    else:
        matches = [middle_matches(path, len(query)) for path in dtw_paths_to_many(query, references)[0]]
    for matched, labels in zip(matches, reference_labels, strict=True):
        given = np.asarray(labels)[matched]
        voting = given >= 0
        np.add.at(votes, (np.flatnonzero(voting), given[voting]), 1)
    return votes


def transfer_phases(
    query: np.ndarray,
    references: list[np.ndarray],
    reference_labels: list[np.ndarray],
    num_phases: int | None = None,
    *,
    subsequence: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Each frame's phase and confidence, by the vote of the references (see the module).

    Args:
        query: (Tq, D) embeddings.
        references: their (Tr, D) embeddings; reference_labels: their (Tr,) labels, < 0 unlabelled.
        num_phases: K (default: 1 + the largest reference label).
        subsequence: match the query with the part of each reference it fits best (a clip; each
            Tr >= Tq) rather than with the whole reference.

    Returns:
        (phases (Tq,) int64, -1 where no reference voted; confidence (Tq,) float64 in [0, 1],
        the winning label's share of the votes, 0 where none voted).
    """
    if num_phases is None:
        num_phases = 1 + max(int(np.max(lab)) if len(lab) else -1 for lab in reference_labels)
    if num_phases < 1:
        raise ValueError("the references have no labelled frame")
    votes = phase_votes(query, references, reference_labels, num_phases, subsequence=subsequence)
    cast = votes.sum(axis=1)
    phases = np.where(cast > 0, votes.argmax(axis=1), -1)
    confidence = np.where(cast > 0, votes.max(axis=1) / np.maximum(cast, 1), 0.0)
    return phases, confidence


def phase_transfer_accuracy(train_embs, train_labels, val_embs, val_labels) -> float:
    """Accuracy of the phases transferred to every validation video from all training videos.

    Each validation video's frames are labelled by :func:`transfer_phases` with the training
    videos as references; the accuracy is over the pooled labelled frames (label >= 0) of the
    validation videos: correct / labelled.
    """
    num_phases = 1 + max(int(np.max(lab)) for lab in [*train_labels, *val_labels] if len(lab))
    correct = total = 0
    for emb, labels in zip(val_embs, val_labels, strict=True):
        labels = np.asarray(labels)
        phases, _ = transfer_phases(emb, list(train_embs), list(train_labels), num_phases)
        labelled = labels >= 0
        correct += int((phases[labelled] == labels[labelled]).sum())
        total += int(labelled.sum())
    if total == 0:
        raise ValueError("phase transfer accuracy needs labelled validation frames")
    return correct / total
