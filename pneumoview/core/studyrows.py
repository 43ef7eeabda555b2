"""A batch report seen one study at a time: each study's highest image probability."""

from __future__ import annotations

from typing import Any


def study_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per study: its highest image probability, flagged if any image is.

    Files without a Study Instance UID (non-DICOM, unreadable) stay one row each.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        key = row.get("study_instance_uid") or f"\0{row.get('relpath')}"
        groups.setdefault(key, []).append(row)
    out = []
    for members in groups.values():
        if len(members) == 1 and not members[0].get("study_instance_uid"):
            out.append(dict(members[0], n_images=1))
            continue
        scored = [m for m in members if m.get("status") == "scored"
                  and m.get("probability") is not None]
        best = max(scored, key=lambda m: m["probability"]) if scored else members[0]
        n_flagged = sum(1 for m in scored if m.get("flagged"))
        statuses = sorted({m.get("status", "") for m in members})
        out.append({
            **best,
            "relpath": f"{len(members)} image(s); highest: {best.get('relpath')}",
            "status": "scored" if scored else ", ".join(statuses),
            "flagged": (n_flagged > 0) if scored else None,
            "message": f"{n_flagged} of {len(scored)} scored image(s) flagged"
                       + (f"; {len(members) - len(scored)} not scored" if
                          len(members) > len(scored) else ""),
            "n_images": len(members),
        })
    return out
