"""The one-line answer at the top of report.html: ship, ship with care, or do not ship.

A newcomer reads the first screen and stops, so the verdict joins the two things that decide a
release: did tuning beat the baseline on the same test rows (the paired bootstrap CI of the
delta excludes 0 *and* the significance test agrees), and did the audit or the doctor find
anything that undermines the numbers. Errors, or a model that is not better, mean do not ship;
warnings mean ship with care; only a significant gain with no error or warning reads "ship".

Findings that both the audit and the doctor raise (leakage, label noise) are merged, so the
report shows each problem once and says who found it.

    v = verdict(metrics, merge_findings(audit, doctor), metric="accuracy", alpha=0.05)
    v["decision"]  # "ship" | "care" | "no"
"""

from __future__ import annotations

import math
from typing import Any

SEVERITY_ORDER = {"error": 0, "warning": 1, "warn": 1, "info": 2}
TITLES = {"ship": "Ship", "care": "Ship with care", "no": "Do not ship"}
# where the numbers behind a doctor finding are shown, beyond the finding's own card
SECTION_OF = {
    "no-improvement": ("headline", "Headline"),
    "slice-gap": ("slices", "Slices"),
    "forgetting": ("forgetting", "Forgetting"),
    "poor-calibration": ("calibration", "Calibration"),
    "no-oos-check": ("oos", "Out of scope"),
    "overfitting": ("curves", "Learning curves"),
    "unstable-training": ("curves", "Learning curves"),
    "test-used-for-selection": ("config", "Resolved config"),
}


def _severity(f: dict) -> str:
    s = str(f.get("severity") or "info").lower()
    return "warning" if s == "warn" else s


def merge_findings(by_source: dict[str, list[dict]]) -> list[dict]:
    """One entry per problem, most severe first, each with an `anchor` id for links.

    A later source's finding with the code of an earlier one joins it (`sources` names both,
    `also` keeps its message when it words the problem differently); the most severe of the
    two is the entry's severity. Findings of one source are never merged with each other: the
    audit raises `duplicate` once per file, and each is its own problem.
    """
    merged: list[dict] = []
    for source, items in by_source.items():
        earlier = {f["code"]: f for f in merged}  # only other sources' findings
        for item in items:
            same = earlier.get(item.get("code"))
            if same is not None and source not in same["sources"]:
                _join(same, item, source)
            else:
                merged.append(
                    {**item, "severity": _severity(item), "sources": [source], "also": []}
                )
    merged.sort(key=lambda f: SEVERITY_ORDER.get(f["severity"], 3))
    seen: dict[str, int] = {}
    for f in merged:
        code = str(f.get("code") or "finding")
        seen[code] = seen.get(code, 0) + 1
        f["anchor"] = f"finding-{code}" + (f"-{seen[code]}" if seen[code] > 1 else "")
        f["section"] = SECTION_OF.get(code)
    return merged


def _join(into: dict, item: dict, source: str) -> None:
    into["sources"].append(source)
    if SEVERITY_ORDER.get(_severity(item), 3) < SEVERITY_ORDER.get(into["severity"], 3):
        into["severity"] = _severity(item)
    if item.get("message") != into.get("message") or item.get("remedy") != into.get("remedy"):
        into["also"].append({"source": source, **{k: item.get(k) for k in ("message", "remedy")}})


def _number(value: Any) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return ok and math.isfinite(value)


def significance(metrics: dict, metric: str, alpha: float) -> dict:
    """Tuned vs the headline baseline on `metric`: better, worse, no-difference, mixed, untested.

    "mixed" is a p-value and a CI that disagree (one says significant, the other does not).
    """
    delta = (metrics.get("delta") or {}).get(metric)
    ci = (metrics.get("ci95") or {}).get(metric)
    p = (metrics.get("significance") or {}).get("p_value")
    base = metrics.get("baseline_name") or "the baseline"
    out = {"metric": metric, "delta": delta, "ci": ci, "p": p, "baseline": base, "alpha": alpha}
    ok_ci = isinstance(ci, list | tuple) and len(ci) == 2 and all(_number(x) for x in ci)
    if not (_number(delta) and _number(p) and ok_ci):
        return {**out, "state": "untested"}
    assert isinstance(ci, list | tuple) and delta is not None and p is not None
    lo, hi, d = float(ci[0]), float(ci[1]), float(delta)
    test_says, ci_says = p < alpha, lo > 0 or hi < 0
    if not test_says and not ci_says:
        return {**out, "state": "no-difference"}
    if test_says and ci_says and d > 0 and lo > 0:
        return {**out, "state": "better"}
    if test_says and ci_says and d < 0 and hi < 0:
        return {**out, "state": "worse"}
    return {**out, "state": "mixed"}


def verdict(metrics: dict, findings: list[dict], metric: str, alpha: float = 0.05) -> dict:
    """The decision, a sentence that says why, and the reasons as links into the report."""
    sig = significance(metrics, metric, alpha)
    errors = [f for f in findings if f["severity"] == "error"]
    warnings = [f for f in findings if f["severity"] == "warning"]
    if errors or sig["state"] in ("worse", "no-difference"):
        decision = "no"
    elif warnings or sig["state"] != "better":
        decision = "care"
    else:
        decision = "ship"
    reasons = [{"text": _evidence_text(sig), "href": "#headline", "kind": sig["state"]}]
    tested = sig["state"] != "untested"  # then the first reason already says no-improvement's
    reasons += [
        _finding_reason(f)
        for f in errors + warnings
        if not (tested and f.get("code") == "no-improvement")
    ]
    notes = sum(1 for f in findings if f["severity"] == "info")
    return {
        "decision": decision,
        "title": TITLES[decision],
        "summary": _summary(decision, sig, len(errors), len(warnings)),
        "reasons": reasons,
        "notes": notes,
    }


def _fmt(x: float) -> str:
    return f"{x:+.4f}"


def _p(p: float) -> str:
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def _evidence_text(sig: dict) -> str:
    m, base = sig["metric"], sig["baseline"]
    if sig["state"] == "untested":
        return f"no significance test against a baseline on {m} (no baseline, or an older run)"
    lo, hi = sig["ci"]
    numbers = f"{m} {_fmt(sig['delta'])}, 95% CI [{_fmt(lo)}, {_fmt(hi)}], p = {_p(sig['p'])}"
    words = {
        "better": f"significantly better than {base}",
        "worse": f"significantly worse than {base}",
        "no-difference": f"not significantly better than {base}",
        "mixed": f"the CI and the p-value disagree about {base}",
    }[sig["state"]]
    return f"{words} ({numbers})"


def _finding_reason(f: dict) -> dict:
    who = " and ".join(f["sources"])
    return {
        "text": f"{f.get('code')}: {f.get('message')} (found by {who})",
        "href": "#" + f["anchor"],
        "kind": f["severity"],
    }


def _summary(decision: str, sig: dict, errors: int, warnings: int) -> str:
    base = sig["baseline"]
    problems = ", ".join(
        f"{n} {word}{'s' if n != 1 else ''}"
        for n, word in ((errors, "error"), (warnings, "warning"))
        if n
    )
    if decision == "ship":
        return f"The tuned model is significantly better than {base}; no check raised a problem."
    if decision == "care":
        gain = {
            "better": f"The tuned model is significantly better than {base}",
            "mixed": f"The evidence against {base} is borderline",
            "untested": "Nothing compared the tuned model with a baseline",
        }[sig["state"]]
        need = "needs" if errors + warnings == 1 else "need"
        tail = f", but {problems} {need} a look before it goes out." if problems else "."
        return gain + tail
    if sig["state"] == "worse":
        head = f"The tuned model is significantly worse than {base}"
    elif sig["state"] == "no-difference":
        head = f"The tuned model is not shown to beat {base}: ship the baseline or tune further"
    else:
        head = "The checks found errors that can invalidate the results"
    more = f" ({problems} below)" if problems else ""
    return head + more + "."
