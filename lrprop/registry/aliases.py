"""Named aliases of published embeddings (``production``) that move only through a gate (issue 15).

    <store>/aliases/embeddings/<dataset>/<action>/<alias>.json
        {"format", "alias", "dataset", "action", "version", "history": [move, …]}
    move = {"at", "by", "kind": "promote" | "force" | "rollback", "from", "to", "reason", "gate"}

A reader asks for ``production`` (``lrprop embeddings pull --alias production``) and gets the
version the alias names, not whatever the last run published. A run promotes each version it
publishes through the gate of its config's ``promotion`` section (:func:`gate`): the version's
metric must beat the time-stretch baseline by more than ``min_gain`` and be no more than
``tolerance`` worse than the alias's current version's: below it, or above it for an error
(``pace/…``, lower is better); its gain over the baseline below the current one's, when the two
were scored on other videos or evaluation settings. A version held back stays published and
readable by its id; ``lrprop embeddings promote --force`` and ``rollback`` move the alias by hand.

Each move rewrites the alias's one file, pointer and history together: one write, so a reader
sees the alias before the move or after it, never a pointer without its audit record. Two moves
of one alias at the same instant (two runs promoting one class) each read the file before either
writes it: the second write wins and the first move's record is lost. One run name runs once at
a time (:mod:`lrprop.pipeline.flow_runs`); promote one class from one place.
"""

from __future__ import annotations

import getpass
import math
import socket
from datetime import UTC, datetime

from lrprop import store
from lrprop.config import EvalConfig, PromotionConfig, config_to_dict
from lrprop.core.baselines import lower_is_better
from lrprop.registry.layout import alias_file, alias_folder, embeddings_collection

__all__ = [
    "ALIAS_FORMAT",
    "alias_file",
    "alias_folder",
    "gate",
    "list_aliases",
    "metric_value",
    "promote",
    "read_alias",
    "resolve_alias",
    "rollback",
    "rolled_back_from",
    "who",
]

ALIAS_FORMAT = "lrprop-alias/1"


def who() -> str:
    """``user@host`` of this process, for a move's audit record."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def read_alias(store_uri: str, dataset: str, action: str, alias: str, **storage_options) -> dict | None:
    """The alias's document (see the module), None when it was never set."""
    uri = alias_file(store_uri, dataset, action, alias)
    try:
        doc = store.read_json(uri, **storage_options)
    except FileNotFoundError:  # not exists(): s3fs says False to an outage
        return None
    if not isinstance(doc, dict) or doc.get("format") != ALIAS_FORMAT or not isinstance(doc.get("history"), list):
        raise ValueError(f"{uri}: not an lrprop alias file (format {ALIAS_FORMAT})")
    store.check_version(doc.get("version"))
    return doc


def resolve_alias(store_uri: str, dataset: str, action: str, alias: str, **storage_options) -> str:
    """The version ``alias`` names; FileNotFoundError naming the alias's file when it is unset."""
    doc = read_alias(store_uri, dataset, action, alias, **storage_options)
    if doc is None:
        raise FileNotFoundError(
            f"{dataset}/{action} has no alias {alias!r} ({alias_file(store_uri, dataset, action, alias)}); "
            "set it with `lrprop embeddings promote`"
        )
    return doc["version"]


def list_aliases(store_uri: str, dataset: str, action: str, **storage_options) -> dict[str, str]:
    """{alias: version} of a class, {} when it has none."""
    folder = alias_folder(store_uri, dataset, action)
    fs, path = store.filesystem(folder, **storage_options)
    if not fs.isdir(path):
        return {}
    files = [p.rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    # Not a write in progress (a local store's temporary sibling: lrprop.store.write_bytes)
    names = sorted(f[: -len(".json")] for f in files if f.endswith(".json") and not f.startswith("."))
    found = {}
    for name in names:
        doc = read_alias(store_uri, dataset, action, name, **storage_options)
        if doc is not None:
            found[name] = doc["version"]
    return found


def metric_value(metrics: dict, name: str) -> float:
    """``metrics[name]``, a nested one as ``ap_at_k/5`` or ``phase_classification/0.1``.

    Raises:
        KeyError: naming the metric and the keys there are.
    """
    node = metrics
    for part in name.split("/"):
        if not isinstance(node, dict) or part not in node:
            there = sorted(node) if isinstance(node, dict) else []
            raise KeyError(f"no metric {name!r} (at {part!r} the keys are {there})")
        node = node[part]
    return float(node)


def gate(candidate: dict, current: dict | None, promotion: PromotionConfig, *, same_videos: bool = True) -> tuple[bool, str]:
    """Whether a version whose metrics are ``candidate`` may replace one whose metrics are
    ``current`` (None: the alias is unset), and why, in one line.

    Both are a class's metrics as published (with "gain" over the time-stretch baseline). Passes
    when, for ``m = promotion.metric``:
        gain[m] > min_gain                           (unless min_gain is None)
        candidate[m] >= current[m] - tolerance       (unless the alias is unset)
    with gain[m] = candidate[m] - baseline[m]. For an error, lower is better
    (:func:`lrprop.core.baselines.lower_is_better`: ``pace/…``): gain[m] = baseline[m] - candidate[m]
    and candidate[m] <= current[m] + tolerance. A NaN metric fails. ``same_videos`` False (the
    current version was scored on other videos or under other evaluation settings, e.g. before
    new videos were ingested): the metrics of the two are not comparable, so the second
    condition compares the gains over the time-stretch baseline (higher is better for every
    metric), each measured on its own version's videos, instead.
    """
    m = promotion.metric
    error = lower_is_better(m)
    try:
        value = metric_value(candidate, m)
    except KeyError as exc:
        return False, f"the new version records {exc.args[0]}"
    if not math.isfinite(value):
        return False, f"{m} is {value}"
    why = [f"{m} {value:.4f}" + (" (an error: lower is better)" if error else "")]
    if promotion.min_gain is not None:
        try:
            gain = metric_value(candidate.get("gain", {}), m)
        except KeyError:
            return False, f"{m} {value:.4f}: no time-stretch baseline recorded beside it"
        if not gain > promotion.min_gain:
            baseline = f"{gain:+.4f} over the time-stretch baseline"
            return False, f"{m} {value:.4f} is {baseline}, not more than {promotion.min_gain:+.4f}"
        why.append(f"{gain:+.4f} over the time-stretch baseline")
    if current is not None:
        # On other videos, the gain over the baseline of each version's own videos
        ours, theirs, what = (
            (candidate, current, m) if same_videos else (candidate.get("gain", {}), current.get("gain", {}), f"{m} gain")
        )
        try:
            mine, held = metric_value(ours, m), metric_value(theirs, m)
        except KeyError:
            mine = held = float("nan")  # the current version records no such metric: nothing to fall below
        other = "" if same_videos else " (scored on other videos or evaluation settings: the gains over the baseline compared)"
        f = ".4f" if same_videos else "+.4f"
        # The gains are higher-is-better for every metric; an error itself is lower-is-better
        lower = error and same_videos
        worse = mine > held + promotion.tolerance if lower else mine < held - promotion.tolerance
        if math.isfinite(held) and math.isfinite(mine) and worse:
            side = "above" if lower else "below"
            by = f"by more than {promotion.tolerance}{other}"
            return False, f"{what} {mine:{f}} is {side} the current version's {held:{f}} {by}"
        if math.isfinite(held) and math.isfinite(mine):
            shown = f"current version's {held:{f}} (tolerance {promotion.tolerance}){other}"
            why.append(shown if same_videos else f"{what} {mine:{f}}, {shown}")
        else:
            why.append(f"the current version records no {what} to compare with")
    return True, "; ".join(why)


def _scored_alike(a: dict, b: dict, metric: str) -> bool:
    """Whether two published versions' ``metric`` was measured on the same videos (data-set
    content hash) with the same evaluation settings (their models' ``eval`` section, the
    defaults filled in where a version stored before a setting existed lacks it). The pace
    settings count only for a pace metric: they change no other one."""
    same_data = a.get("dataset_content_hash") is not None and a.get("dataset_content_hash") == b.get("dataset_content_hash")

    def settings(m: dict) -> dict:
        stored = (m.get("model") or {}).get("config", {}).get("eval") or {}
        filled = {**config_to_dict(EvalConfig()), **stored}
        return filled if lower_is_better(metric) else {k: v for k, v in filled.items() if not k.startswith("pace_")}

    return same_data and settings(a) == settings(b)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _move(store_uri, dataset, action, alias, doc, version, *, kind, by, reason, gate_why, storage_options) -> dict:
    """Write the alias pointing at ``version`` with the move appended to its history (one write)."""
    move = {"at": _now(), "by": by, "kind": kind, "from": doc["version"] if doc else None, "to": version, "reason": reason}
    if gate_why is not None:
        move["gate"] = gate_why
    new = {
        "format": ALIAS_FORMAT,
        "alias": alias,
        "dataset": dataset,
        "action": action,
        "version": version,
        "history": [*(doc["history"] if doc else []), move],
    }
    store.write_json(alias_file(store_uri, dataset, action, alias), new, **storage_options)
    return move


def promote(
    store_uri: str,
    dataset: str,
    action: str,
    version: str,
    promotion: PromotionConfig,
    *,
    alias: str | None = None,
    force: bool = False,
    by: str | None = None,
    reason: str = "",
    automatic: bool = False,
    storage_options: dict | None = None,
) -> dict:
    """Move ``alias`` (default ``promotion.alias``) to ``version`` if it passes :func:`gate`
    against the alias's current version, or regardless with ``force`` (recorded as forced).

    ``automatic`` (a run promoting what it published or kept): a version a person rolled the
    alias back from is not moved to again, whatever the gate says; only by hand.

    Returns:
        {"alias", "moved" (bool), "from", "to", "why"}: ``to`` the version asked for, ``why``
        the gate's line (or that the alias already names it).

    Raises:
        FileNotFoundError: ``version`` is not a complete published version.
        ValueError: no alias given and ``promotion.alias`` is None; a malformed alias file.
    """
    opts = storage_options or {}
    alias = alias or promotion.alias
    if not alias:
        raise ValueError("no alias to promote: give one (promotion.alias is null)")
    collection = embeddings_collection(store_uri, dataset, action)
    candidate = store.read_manifest(collection, store.check_version(version), **opts)
    doc = read_alias(store_uri, dataset, action, alias, **opts)
    held = doc["version"] if doc else None
    if held == version:
        return {"alias": alias, "moved": False, "from": held, "to": version, "why": f"{alias} already names {version}"}
    if automatic and (back := rolled_back_from(doc, version)) is not None:
        why = f"{alias} was rolled back from it ({back['at']}, by {back['by']}); promote it by hand"
        return {"alias": alias, "moved": False, "from": held, "to": version, "why": why}
    current, same_videos = None, True
    if held is not None:
        try:
            held_manifest = store.read_manifest(collection, held, **opts)
        except FileNotFoundError:  # the version it named is gone (deleted by hand): nothing to compare with
            held_manifest = None
        if held_manifest is not None:
            current = held_manifest.get("metrics", {})
            same_videos = _scored_alike(candidate, held_manifest, promotion.metric)
    passed, why = gate(candidate.get("metrics", {}), current, promotion, same_videos=same_videos)
    if not passed and not force:
        return {"alias": alias, "moved": False, "from": held, "to": version, "why": why}
    kind = "promote" if passed else "force"
    _move(store_uri, dataset, action, alias, doc, version, kind=kind, by=by or who(), reason=reason, gate_why=why,
          storage_options=opts)  # fmt: skip
    return {"alias": alias, "moved": True, "from": held, "to": version, "why": why if passed else f"forced past the gate: {why}"}


def _held_stack(history: list[dict]) -> list[str]:
    """The versions an alias held, oldest first, less those rolled back: a promotion pushes its
    version; a rollback to a version held before drops what came after its last time there, and
    one to a version never held replaces the version rolled away from."""
    stack: list[str] = []
    for move in history:
        to = move["to"]
        if move["kind"] != "rollback":
            stack.append(to)
        elif to in stack:
            del stack[len(stack) - stack[::-1].index(to) :]
        else:
            stack[-1:] = [to]
    return stack


def rolled_back_from(doc: dict | None, version: str) -> dict | None:
    """The last rollback that moved the alias away from ``version``, if any."""
    moves = [m for m in (doc or {}).get("history", []) if m["kind"] == "rollback" and m["from"] == version]
    return moves[-1] if moves else None


def rollback(
    store_uri: str,
    dataset: str,
    action: str,
    alias: str,
    *,
    to: str | None = None,
    by: str | None = None,
    reason: str = "",
    storage_options: dict | None = None,
) -> dict:
    """Move ``alias`` back to the version it held before its current one (or to ``to``, any
    complete version), without a gate: rolling back is a person's decision, recorded as one.

    Returns the move recorded: {"at", "by", "kind": "rollback", "from", "to", "reason"}.

    Raises:
        FileNotFoundError: the alias is unset, or ``to`` is not a complete version.
        ValueError: it held no version before its current one.
    """
    opts = storage_options or {}
    doc = read_alias(store_uri, dataset, action, alias, **opts)
    if doc is None:
        resolve_alias(store_uri, dataset, action, alias, **opts)  # raises, naming the file
    if to is None:
        stack = _held_stack(doc["history"])
        if len(stack) < 2:
            raise ValueError(f"{dataset}/{action} {alias} held no version before {doc['version']}: nothing to roll back to")
        to = stack[-2]
    store.read_manifest(embeddings_collection(store_uri, dataset, action), store.check_version(to), **opts)
    return _move(store_uri, dataset, action, alias, doc, to, kind="rollback", by=by or who(), reason=reason, gate_why=None,
                 storage_options=opts)  # fmt: skip
