"""``plan-more``: from an aggregation output, how many more responses each image and task
needs to reach a target precision (``estimate`` has the statistics), as a table.

The output's dataset is read column by column without its heatmaps (memory-mapped Arrow:
the plan of 13k images reads a few MB). One row per (image, task) that can be asked again:
the three ratings and the words for every image, and with ``heatmap_reliability`` the
point (and region) tasks of the images that have those heatmaps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rfengine.adaptive import estimate as est
from rfengine.errors import InputError
from rfengine.schema import CRITERIA, HEATMAP_KINDS, REGION_KINDS
from rfengine.store.load import load_dataset
from rfengine.store.owned import write_atomic

#: the plan table's columns (``more`` is what a top-up asks for)
PLAN_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("task", pa.string()),
        ("n", pa.int64()),  # responses now (null where the output does not count them)
        ("n_eff", pa.float64()),  # Kish's effective number of them
        ("current", pa.float64()),  # 95% half-width now (reliability for heatmaps)
        ("low", pa.float64()),  # the current (moderated) interval, ratings only
        ("high", pa.float64()),
        ("target", pa.float64()),
        ("within", pa.bool_()),  # within target now
        ("more", pa.int64()),  # responses asked (after --max-per-image and --budget)
        ("expected", pa.float64()),  # half-width (reliability) expected after ``more``
        ("expected_within", pa.bool_()),
        ("p_within", pa.float64()),  # probability the truth is within target after ``more``
    ]
)
#: Parquet schema metadata key of a plan's record (the output, the campaign, the targets)
META_KEY = b"rfengine_plan"


@dataclass(frozen=True)
class Targets:
    """What a plan aims at (the ``plan-more`` options)."""

    ci_half_width: float  # ratings, in Likert points
    word_ci_half_width: float = 0.15  # shares of word responses
    heatmap_reliability: float | None = None  # split-half, Spearman-Brown corrected
    max_per_image: int | None = None  # per image and task
    budget: int | None = None  # responses in all
    max_growth: float | None = None  # per round, at most this times the responses so far
    share: float | None = None  # aim at this expected share within target, not every row

    def check(self) -> None:
        for name, value, lo, hi in (
            ("--ci-half-width", self.ci_half_width, 0, 4),
            ("--word-ci-half-width", self.word_ci_half_width, 0, 1),
        ):
            if not lo < value <= hi:
                raise InputError(f"{name} must be in ({lo}, {hi}], got {value}")
        r = self.heatmap_reliability
        if r is not None and not 0 < r < 1:
            raise InputError(f"--heatmap-reliability must be in (0, 1), got {r}")
        if self.share is not None and not 0 < self.share < 1:
            raise InputError(f"--share must be in (0, 1), got {self.share}")
        if self.max_growth is not None and not self.max_growth > 0:
            raise InputError(f"--max-growth must be > 0, got {self.max_growth}")
        for name, value in (("--max-per-image", self.max_per_image), ("--budget", self.budget)):
            if value is not None and value < 0:
                raise InputError(f"{name} must be >= 0, got {value}")


def _col(table: pa.Table, name: str, fill: float = np.nan) -> np.ndarray:
    """A column as float64, nulls as ``fill``."""
    return table[name].fill_null(fill).to_numpy(zero_copy_only=False).astype(np.float64)


def _rows(task: str, ids: np.ndarray, **cols: Any) -> pa.Table:
    n = len(ids)
    full = {f.name: cols.get(f.name, np.full(n, np.nan)) for f in PLAN_SCHEMA}
    full["image_id"], full["task"] = ids, np.full(n, task, dtype=object)
    arrays = []
    for f in PLAN_SCHEMA:
        v = full[f.name]
        if f.name == "n" and np.issubdtype(np.asarray(v).dtype, np.floating):
            arrays.append(pa.array(np.nan_to_num(v, nan=-1).astype(np.int64), mask=np.isnan(v)))
        else:
            arrays.append(pa.array(v, type=f.type))
    return pa.Table.from_arrays(arrays, schema=PLAN_SCHEMA)


def _ratings(t: pa.Table, targets: Targets) -> tuple[list[dict], np.ndarray]:
    """Per criterion, the plan's columns (and what ``_expected`` needs), and per image the
    mean efficiency ``n_eff / n`` of its rating responses (for the words)."""
    out, eff = [], []
    for c in CRITERIA:
        n, ne, std = _col(t, f"{c}_count", 0), _col(t, f"{c}_n_eff", 0), _col(t, f"{c}_std", 0)
        score = _col(t, f"{c}_score")
        prior = est.variance_prior(*est.own_variance(std, ne))
        var, df = est.moderated(std, ne, prior)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.where(n > 0, ne / n, np.nan)
        pooled = float(np.nanmean(rho)) if np.isfinite(rho).any() else 1.0
        rho = np.where(np.isfinite(rho), rho, pooled)
        eff.append(rho)
        now = est.score_half_width(var, df, ne)
        more = est.score_more(var, df, ne, rho, targets.ci_half_width)
        out.append(
            dict(
                task=c,
                n=n,
                n_eff=ne,
                current=now,
                low=score - now,
                high=score + now,
                more=more,
                var=var,
                df=df,
                rho=rho,
            )  # fmt: skip
        )
    return out, np.mean(eff, axis=0)


def _words(t: pa.Table, rho: np.ndarray, targets: Targets) -> dict[str, Any]:
    """The words task: the binding share per image is the one nearest 1/2 among its words'
    and "[No_Mistake]"'s (a share of the weight of its word responses)."""
    total, ne = _col(t, "word_weight_total", 0), _col(t, "no_mistake_n_eff", 0)
    no_mistake = _col(t, "no_mistake_score", 0)
    p = np.full(len(total), 0.5)
    for k, text in enumerate(t["word_scores"].to_pylist()):  # JSON text: one parse per image
        if text is None or total[k] <= 0:
            continue
        shares = np.array([v for _, v in json.loads(text)] + [no_mistake[k]]) / total[k]
        p[k] = shares[np.argmin(np.abs(shares - 0.5))]
    now = est.share_half_width(p, ne)
    more = est.share_more(p, ne, rho, targets.word_ci_half_width)
    return dict(task="words", n_eff=ne, current=now, more=more, p=p, rho=rho)


def plan_more(out: str | Path, targets: Targets) -> tuple[pa.Table, dict[str, Any]]:
    """The plan of output ``out`` for ``targets``: the table (``PLAN_SCHEMA``) and its
    summary (per task: rows, within target now, responses asked, expected within after)."""
    targets.check()
    ds = load_dataset(out)
    names = set(ds.column_names)
    kinds = [k for k in HEATMAP_KINDS + REGION_KINDS if f"{k}_heatmap_reliability" in names]
    if targets.heatmap_reliability is not None and not kinds:
        raise InputError(
            f"{out}: --heatmap-reliability needs the heatmaps' split-half reliability: "
            "aggregate with --reliability"
        )
    want = ["image_id", "word_scores", "word_weight_total", "no_mistake_score",
            "no_mistake_n_eff"] + [f"{c}_{s}" for c in CRITERIA
                                   for s in ("count", "n_eff", "std", "score")]  # fmt: skip
    if targets.heatmap_reliability is not None:
        want += [f"{k}_heatmap_{s}" for k in kinds for s in ("reliability", "annotators")]
    t = ds.select_columns(want).data.table  # memory-mapped Arrow, no heatmaps
    ids = np.asarray(t["image_id"].to_pylist(), dtype=object)
    parts, rho = _ratings(t, targets)
    parts.append(_words(t, rho, targets))
    # a task no image has a response of was not collected: nothing to top up
    parts = [p for p in parts if np.nansum(p["n"] if "n" in p else p["n_eff"]) > 0]
    for kind in kinds if targets.heatmap_reliability is not None else ():
        n = _col(t, f"{kind}_heatmap_annotators", 0)
        rel = _col(t, f"{kind}_heatmap_reliability")
        r, one, more = est.reliability_more(rel, n, targets.heatmap_reliability)
        task = f"{kind}s" if kind in REGION_KINDS else f"{kind}_points"
        parts.append(dict(task=task, n=n, current=r, more=more, one=one, has=n > 0))
    return _finish(parts, ids, targets)


def _expected(part: dict[str, Any], more: np.ndarray, target: float) -> np.ndarray:
    if part["task"] in CRITERIA:
        grow = more * part["rho"]
        return est.score_half_width(part["var"], part["df"] + grow, part["n_eff"] + grow)
    if part["task"] == "words":
        return est.share_half_width(part["p"], part["n_eff"] + more * part["rho"])
    return est.grown_reliability(part["one"], part["n"] + more)


def _p_grid(
    part: dict[str, Any], r: np.ndarray, targets: Targets, m: np.ndarray | None = None
) -> np.ndarray:
    """``(len(r), M)``: each row's probability of lying within target after ``m`` more
    (default ``estimate.GRID``): a t (ratings) or normal (words) probability; a heatmap's
    reliability reaches its target or not (1 or 0)."""
    m = est.GRID[None, :] if m is None else m
    task, target = part["task"], _target(part["task"], targets)
    if task in CRITERIA:
        grow = m * part["rho"][r][:, None]
        df = part["df"][r][:, None] + grow
        hw = est.score_half_width(part["var"][r][:, None], df, part["n_eff"][r][:, None] + grow)
        return est.p_within(hw, df, target)
    if task == "words":
        ne = part["n_eff"][r][:, None] + m * part["rho"][r][:, None]
        return est.p_within(est.share_half_width(part["p"][r][:, None], ne), np.inf, target)
    grown = est.grown_reliability(part["one"][r][:, None], part["n"][r][:, None] + m)
    return (grown >= target).astype(np.float64)


def _target(task: str, targets: Targets) -> float:
    if task in CRITERIA:
        return targets.ci_half_width
    if task == "words":
        return targets.word_ci_half_width
    assert targets.heatmap_reliability is not None
    return targets.heatmap_reliability


def _finish(parts: list[dict], ids: np.ndarray, targets: Targets) -> tuple[pa.Table, dict]:
    """Caps, the budget across every row, the expected precision, the table and summary."""
    rows = [np.flatnonzero(p.get("has", np.ones(len(ids), bool))) for p in parts]
    more = np.concatenate([p["more"][r] for p, r in zip(parts, rows, strict=True)])
    cap = np.full(len(more), np.inf)
    if targets.max_growth is not None:  # rounds that grow: learn which images are hard
        # responses so far (the words': their effective number over the ratings' efficiency)
        so_far = [p["n"] if "n" in p else p["n_eff"] / p["rho"] for p in parts]
        n = np.concatenate([k[r] for k, r in zip(so_far, rows, strict=True)])
        cap = np.ceil(targets.max_growth * np.maximum(np.nan_to_num(n), 1))
    if targets.max_per_image is not None:
        cap = np.minimum(cap, targets.max_per_image)
    if targets.share is not None:  # where a response buys the most probability
        grid = np.concatenate([_p_grid(p, r, targets) for p, r in zip(parts, rows, strict=True)])
        more = est.allocate_share(grid, cap, targets.share, targets.budget)
    else:
        more = est.allocate(np.minimum(more, cap).astype(np.int64), targets.budget)
    tables, summary, at = [], {}, 0
    for part, r in zip(parts, rows, strict=True):
        task, target = part["task"], _target(part["task"], targets)
        m = np.zeros(len(ids), dtype=np.int64)
        m[r] = more[at : at + len(r)]
        at += len(r)
        higher = task not in CRITERIA and task != "words"  # reliability: higher is better
        now, after = part["current"], _expected(part, m, target)
        prob = _p_grid(part, r, targets, m[r][:, None])[:, 0]
        within = now >= target if higher else now <= target
        after_ok = after >= target if higher else after <= target
        sub = {k: v[r] for k, v in part.items() if isinstance(v, np.ndarray)}
        tables.append(
            _rows(
                task,
                ids[r],
                **{k: sub[k] for k in ("n", "n_eff", "low", "high") if k in sub},
                current=now[r],
                target=np.full(len(r), target),
                within=within[r],
                more=m[r],
                expected=after[r],
                expected_within=after_ok[r],
                p_within=prob,
            )  # fmt: skip
        )
        summary[task] = {
            "rows": len(r),
            "within_now": int(within[r].sum()),
            "responses_asked": int(m[r].sum()),
            "expected_within": int(after_ok[r].sum()),
            "expected_share_within": round(float(prob.mean()), 4) if len(r) else None,
        }
    table = pa.concat_tables(tables)
    totals = {
        "responses_asked": int(pc.sum(table["more"]).as_py() or 0),
        "rows": table.num_rows,
        "within_now_share": _share(table["within"]),
        "expected_within_share": _share(table["expected_within"]),
        "expected_share_within": round(float(np.mean(table["p_within"].to_numpy())), 4)
        if table.num_rows
        else None,
    }
    return table, {"tasks": summary, **totals}


def _share(col: pa.ChunkedArray) -> float:
    n = len(col)
    return round(float(pc.sum(col.cast(pa.int64())).as_py() or 0) / n, 4) if n else 1.0


def write_plan(table: pa.Table, path: str | Path, meta: dict[str, Any]) -> Path:
    """The plan as JSONL or Parquet (by the extension), written atomically; Parquet keeps
    ``meta`` (the output, the campaign, the targets) in its schema metadata."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext == ".parquet":
        tmp = path.with_name(f".{path.name}.partial")
        try:
            pq.write_table(table.replace_schema_metadata({META_KEY: json.dumps(meta)}), tmp)
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    elif ext == ".jsonl":
        lines = (json.dumps(r, allow_nan=False) for r in _clean(table.to_pylist()))
        write_atomic(path, "".join(line + "\n" for line in lines))
    else:
        raise InputError(f"{path}: a plan is .jsonl or .parquet")
    return path


def _clean(rows: list[dict]) -> list[dict]:
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float) and not np.isfinite(v):
                r[k] = None
    return rows


__all__ = ["META_KEY", "PLAN_SCHEMA", "Targets", "plan_more", "write_plan"]


def is_plan(path: Path) -> bool:
    """Whether ``path`` is a plan ``write_plan`` wrote (for ``--overwrite``)."""
    try:
        if path.suffix.lower() == ".parquet":
            return META_KEY in (pq.read_schema(path).metadata or {})
        with path.open(encoding="utf-8") as fh:
            first = fh.readline()
        return not first or set(json.loads(first)) == set(PLAN_SCHEMA.names)
    except (OSError, ValueError, TypeError, pa.ArrowException):
        return False


def read_plan(path: str | Path) -> tuple[pa.Table, dict[str, Any]]:
    """A plan written by ``write_plan``: its table (checked: the plan's columns, ``more`` a
    count >= 0 on one row per image and task) and its record (``{}`` for JSONL)."""
    path = Path(path)
    meta: dict[str, Any] = {}
    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(META_KEY)
            meta = json.loads(raw) if raw else {}
        elif path.suffix.lower() == ".jsonl":
            import pyarrow.json as pj

            table = pj.read_json(path, parse_options=pj.ParseOptions(explicit_schema=PLAN_SCHEMA))
        else:
            raise InputError(f"{path}: a plan is .jsonl or .parquet")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable plan ({str(exc).splitlines()[0]})") from None
    missing = [n for n in ("image_id", "task", "more") if n not in table.column_names]
    if missing:
        raise InputError(f"{path}: not an rfengine plan (no column {', '.join(missing)})")
    more = table["more"].to_numpy(zero_copy_only=False)
    if table["more"].null_count or (more < 0).any():
        raise InputError(f"{path}: column 'more' must be a count >= 0 on every row")
    keys = pc.binary_join_element_wise(table["image_id"], table["task"], "\x00")
    if len(pc.unique(keys)) != table.num_rows:
        raise InputError(f"{path}: an (image_id, task) pair is planned twice")
    return table, meta


__all__ += ["is_plan", "read_plan"]
