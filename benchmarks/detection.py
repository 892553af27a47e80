"""Detection benchmark: false positives, recall and onset error of every detector on planted failures.

Records the planted-failure suite (``tests/detectors/suite.py``) into
``--store`` (reused when present, ``--fresh`` re-records), audits every case
alone with every registered detector (the catalogue and the ``legacy-*``
profiles), and prints per detector: the false-positive rate on clean runs,
the recall on the runs planted for it, the median onset error in episodes,
with 95% Wilson intervals; then the calibration of the per-run ``risk``
(held-out clean runs and planted runs). ``--markdown FILE`` writes the
tables; ``--write-calibration`` stores the clean scores as rlaudit's
calibration set (``src/rlaudit/detectors/calibration.json``).

    python benchmarks/detection.py --size small
    python benchmarks/detection.py --size full --markdown /tmp/detection.md --write-calibration
    python benchmarks/detection.py --size full --detectors reward-spike,irreproducible   # their rows only
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.detectors.suite import CATALOGUE, Case, audit_case, cases, onset_error, record_all  # noqa: E402

TARGET_FP, TARGET_RECALL, TARGET_ONSET = 0.05, 0.90, 5


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _audit_worker(args):
    case, folder, names = args
    from rlaudit.detectors.registry import get_registry

    specs = [s for s in get_registry().specs() if names is None or s.name in names]
    res = audit_case(case, Path(folder), specs)
    return case, {d: [(f.episode_start, f.score, f.run_id) for f in fs] for d, fs in res.found.items()}, res.statuses


def audit_all(case_list: list[Case], folders: list[Path], processes: int,
              names: list[str] | None = None) -> list[tuple]:
    work = [(c, str(f), names) for c, f in zip(case_list, folders)]
    if processes <= 1:
        return [_audit_worker(w) for w in work]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(processes) as pool:
        return pool.map(_audit_worker, work)


def _median(xs: list[float]) -> float:
    """The median (not ``statistics.median``: this folder's statistics.py shadows the standard library's)."""
    s = sorted(xs)
    mid = len(s) // 2
    return float(s[mid]) if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _rate(k: int, n: int) -> str:
    if n == 0:
        return "–"
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {k / n:.0%} [{lo:.0%}, {hi:.0%}]"


def summarise(results: list[tuple], registered: list[str]) -> list[dict]:
    clean = [(c, found, st) for c, found, st in results if c.detector is None]
    rows = []
    for d in list(CATALOGUE) + sorted(n for n in registered if n not in CATALOGUE):
        row: dict = {"detector": d, "registered": d in registered}
        planted = [(c, found, st) for c, found, st in results if c.detector == d]
        if d in registered:
            audited = [(c, found, st) for c, found, st in clean if st.get(d) != "skipped"]
            row["fp"] = sum(1 for _, found, _ in audited if found.get(d))
            row["clean_audited"] = len(audited)
            row["clean_skipped"] = len(clean) - len(audited)
            row["fp_runs"] = sorted(c.name for c, found, _ in audited if found.get(d))
            row["errors"] = sorted(c.name for c, _, st in results if st.get(d) == "error")
            hits = [(c, found) for c, found, _ in planted if found.get(d)]
            row["found"] = len(hits)
            row["planted"] = len(planted)
            row["missed"] = sorted(c.name for c, found, _ in planted if not found.get(d))
            errs = []
            for c, found in hits:
                starts = [s for s, _, _ in found[d] if s is not None]
                e = onset_error(c, [type("F", (), {"episode_start": s}) for s in starts])
                if e is not None:
                    errs.append(e)
            row["onset_errors"] = errs
        else:
            row["planted"] = len(planted)
        rows.append(row)
    return rows


def risk_calibration(results: list[tuple], registered: list[str]) -> dict:
    """Risk of held-out clean runs and of planted runs, calibrating on the other seeds (or leave-one-out)."""
    from rlaudit.detectors.calibration import build_calibration

    def strongest(found):
        return {d: max(s for _, s, _ in fs) for d, fs in found.items() if fs and not d.startswith("legacy-")}

    detectors = [d for d in registered if not d.startswith("legacy-")]
    clean = [(c, strongest(found)) for c, found, _ in results if c.detector is None]
    planted = [(c, strongest(found)) for c, found, _ in results if c.detector is not None]
    seeds = sorted({c.seed for c, _ in clean})
    held_clean, held_planted = [], []
    if len(seeds) > 1:
        folds = [([x for x in clean if x[0].seed != s], [x for x in clean if x[0].seed == s],
                  [x for x in planted if x[0].seed == s]) for s in seeds]
    else:
        folds = [(clean[:i] + clean[i + 1:], [clean[i]], []) for i in range(len(clean))]
        folds.append((clean, [], planted))
    for calib, test_clean, test_planted in folds:
        cal = build_calibration([s for _, s in calib], detectors)
        held_clean += [cal.risk(s) for _, s in test_clean]
        held_planted += [cal.risk(s) for _, s in test_planted]
    out = {"clean_runs": len(held_clean), "planted_runs": len(held_planted), "levels": {}}
    for level in (0.8, 0.9, 0.95):
        k = sum(r >= level for r in held_clean)
        kp = sum(r >= level for r in held_planted)
        out["levels"][level] = {"clean_at_or_above": k, "planted_at_or_above": kp}
    out["calibration_runs"] = len(clean)
    return out


def table(rows: list[dict]) -> str:
    lines = ["| detector | false positives on clean runs | recall on its plants | median onset error (episodes) | targets met |",
             "|---|---|---|---|---|"]
    for r in rows:
        if not r["registered"]:
            lines.append(f"| `{r['detector']}` | not registered | ({r['planted']} plants ready) | | |")
            continue
        errs = r.get("onset_errors", [])
        onset = f"{_median(errs):g} (max {max(errs)}, n={len(errs)})" if errs else "–"
        n, fp = r["clean_audited"], r["fp"]
        ok_fp = n > 0 and fp / n <= TARGET_FP
        ok_rec = r["planted"] == 0 or r["found"] / r["planted"] >= TARGET_RECALL
        ok_on = not errs or _median(errs) <= TARGET_ONSET
        skipped = f" ({r['clean_skipped']} skipped)" if r["clean_skipped"] else ""
        verdict = "not measured" if n == 0 and r["planted"] == 0 else "yes" if ok_fp and ok_rec and ok_on else "no"
        lines.append(f"| `{r['detector']}` | {_rate(fp, n)}{skipped} | {_rate(r['found'], r['planted'])} | {onset} | "
                     f"{verdict} |")
    return "\n".join(lines)


def risk_table(cal: dict) -> str:
    lines = [f"Held-out clean runs: {cal['clean_runs']}; planted runs: {cal['planted_runs']} "
             f"(calibration set: {cal['calibration_runs']} clean runs).", "",
             "| risk at least | clean runs (should be ≤ 1 − level) | planted runs (detection rate) |", "|---|---|---|"]
    for level, v in cal["levels"].items():
        n, m = cal["clean_runs"], cal["planted_runs"]
        lines.append(f"| {level:g} | {_rate(v['clean_at_or_above'], n)} | {_rate(v['planted_at_or_above'], m)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("small", "full"), default="small")
    ap.add_argument("--store", default=None, help="Folder of recorded cases (default /tmp/rlaudit-detection-SIZE).")
    ap.add_argument("--fresh", action="store_true", help="Re-record every case.")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--markdown", default=None, help="Write the tables to this file.")
    ap.add_argument("--json", default=None, help="Write the raw rows to this file.")
    ap.add_argument("--write-calibration", action="store_true",
                    help="Store the clean runs' scores as rlaudit's calibration set.")
    ap.add_argument("--detectors", default=None,
                    help="Comma-separated detector names: audit only these, on the clean cases and their own plants "
                         "(no risk calibration).")
    args = ap.parse_args(argv)

    from rlaudit.detectors.registry import get_registry

    names = None
    if args.detectors:
        names = [n.strip() for n in args.detectors.split(",") if n.strip()]
        unknown = [n for n in names if n not in get_registry().names()]
        if unknown:
            ap.error(f"unknown detector(s) {', '.join(unknown)}; registered: {', '.join(get_registry().names())}")
        if args.write_calibration:
            ap.error("--write-calibration needs every detector: leave out --detectors")
    store = Path(args.store or f"/tmp/rlaudit-detection-{args.size}")
    store.mkdir(parents=True, exist_ok=True)
    case_list = [c for c in cases(args.size) if names is None or c.detector is None or c.detector in names]
    t0 = time.perf_counter()
    folders = record_all(case_list, store, processes=args.processes, fresh=args.fresh)
    t1 = time.perf_counter()
    results = audit_all(case_list, folders, args.processes, names)
    t2 = time.perf_counter()
    registered = names or get_registry().names()
    rows = [r for r in summarise(results, registered) if names is None or r["detector"] in names]
    cal = risk_calibration(results, registered) if names is None else None
    n_clean = sum(1 for c in case_list if c.detector is None)
    head = (f"{len(case_list)} cases ({n_clean} clean, {len(case_list) - n_clean} planted), size {args.size}; "
            f"recording {t1 - t0:.0f} s, auditing {t2 - t1:.0f} s, {args.processes} processes")
    text = head + "\n\n" + table(rows) + "\n"
    if cal is not None:
        text += "\nRisk calibration\n\n" + risk_table(cal) + "\n"
    misses = [f"{r['detector']}: missed {', '.join(r['missed'])}" for r in rows if r.get("missed")]
    fps = [f"{r['detector']}: flagged clean {', '.join(r['fp_runs'])}" for r in rows if r.get("fp_runs")]
    errors = [f"{r['detector']}: error on {', '.join(r['errors'])}" for r in rows if r.get("errors")]
    print(text)
    for line in misses + fps + errors:
        print(line)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "risk": cal}, indent=1, default=str))
    if args.write_calibration:
        from rlaudit.detectors.calibration import CALIBRATION_FILE, build_calibration

        clean = [{d: max(s for _, s, _ in fs) for d, fs in found.items() if fs and not d.startswith("legacy-")}
                 for c, found, _ in results if c.detector is None]
        cal_set = build_calibration(clean, [d for d in registered if not d.startswith("legacy-")],
                                    source=f"benchmarks/detection.py --size {args.size}: {len(clean)} clean runs")
        CALIBRATION_FILE.write_text(json.dumps(cal_set.to_dict(), indent=1, sort_keys=True) + "\n")
        print(f"wrote {CALIBRATION_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
