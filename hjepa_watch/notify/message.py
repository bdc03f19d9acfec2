"""Notification text: a title and a Markdown body per alert or per group of alerts.

apprise converts Markdown to the channel's own format (plain text for SMS-like
services, HTML for email), so one rendering serves every channel.
"""

from __future__ import annotations

import datetime as _dt

#: What to check first, by rule name (the default pack) or by condition.
HINTS_BY_CONDITION = {
    "nonfinite": "the learning rate and its warmup, gradient clipping, mixed-precision loss scaling, "
    "and the batch just before it",
    "spike": "the batch that caused it, the learning rate, gradient clipping; gradient-norm spikes usually "
    "come before loss spikes",
    "trend_up": "the learning-rate schedule, and whether the representations are collapsing (std·√D, rank)",
    "rise_from_min": "partial collapse (a known JEPA failure: loss rebounds after its minimum), the learning rate",
    "drop_from_max": "dimensional collapse: the EMA momentum schedule, the learning rate, the masking ratio",
    "below": "the learning rate, the EMA momentum (too low lets the target chase the context), the masking ratio",
    "above": "the value against its expected range; the learning rate and the EMA schedule",
    "outside": "the schedule or configuration that sets this value",
    "inside": "the schedule or configuration that sets this value",
    "stale": "whether the job is alive: a hung collective (NCCL's timeout is 10 minutes), a full disk, the writer",
}
_SEV = {"critical": "CRITICAL", "warning": "WARNING", "info": "INFO"}


def _when(wall: float) -> str:
    return _dt.datetime.fromtimestamp(wall, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds: float) -> str:
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _labels(d: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(d["labels"].items()))


def hint_for(alert: dict) -> str | None:
    """The rule's ``hint`` annotation, else the condition's default hint."""
    hint = (alert.get("annotations") or {}).get("hint")
    return hint or HINTS_BY_CONDITION.get(alert.get("condition") or "")


def _one(d: dict, now: float) -> list[str]:
    labels = _labels(d)
    state = d["state"].upper()
    head = f"**{d['rule']}** {state} on **{d['run']}**" + (f" ({labels})" if labels else "") + f" — {d['severity']}"
    lines = [head, "", d["summary"], ""]
    value = d["value"]
    thr = d.get("threshold")
    lines.append(f"- metric: `{d['metric']}` = {value:.4g}" + (f" (threshold {thr})" if thr is not None else ""))
    lines.append(f"- step {d['step']}, {_when(d['wall_time'])}")
    if d["state"] == "firing":
        lines.append(f"- firing for {_duration(now - d['wall_time'])}")
    hint = hint_for(d)
    if hint and d["state"] == "firing":
        lines.append(f"- what to check: {hint}")
    return lines


def render(alerts: list[dict], now: float) -> tuple[str, str]:
    """(title, Markdown body) for alerts of one run (or a digest of several runs)."""
    worst = max(alerts, key=lambda d: ("info", "warning", "critical").index(d["severity"]))
    sev = _SEV.get(worst["severity"], worst["severity"].upper())
    runs = sorted({d["run"] for d in alerts})
    where = runs[0] if len(runs) == 1 else f"{len(runs)} runs"
    if len(alerts) == 1:
        d = alerts[0]
        labels = _labels(d)
        title = f"[{sev}] {d['rule']} {d['state']} on {d['run']}" + (f" ({labels})" if labels else "")
    else:
        firing = sum(d["state"] == "firing" for d in alerts)
        title = f"[{sev}] {len(alerts)} alerts on {where} ({firing} firing)"
    body: list[str] = []
    for d in alerts[:20]:
        if body:
            body += ["", "---", ""]
        body += _one(d, now)
    if len(alerts) > 20:
        body += ["", f"… and {len(alerts) - 20} more: `hjepa-watch history` lists them all."]
    return title, "\n".join(body)


def sample_alert(now: float) -> dict:
    """A representative firing alert (``notify-test``, benchmarks, tests)."""
    return {
        "rule": "collapse_std",
        "run": "notify-test",
        "labels": {"level": "0"},
        "state": "firing",
        "severity": "critical",
        "metric": "train/collapse/level0_std_sqrt_d",
        "value": 0.05,
        "threshold": 0.1,
        "step": 1200,
        "wall_time": now - 90,
        "summary": "level 0 of notify-test collapsed: std*sqrt(D) 0.05 at step 1200",
        "condition": "below",
        "segment": 0,
    }
