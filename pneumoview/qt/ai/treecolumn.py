"""The study tree's AI column: each image's result, and each study's highest probability."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pneumoview.qt.plaintext import tip
from pneumoview.qt.studytree import AI_COLUMN, INSTANCE_ROLE, NAME, StudyTree
from pneumoview.qt.theme import state_brush


class AITreeColumn:
    """Writes results into the AI column of the tree given to :meth:`attach` (nothing before);
    ``result_for(path)`` gives what a file shows (already at the current threshold), ``None``
    for no result yet."""

    def __init__(self, result_for: Callable[[str], Any]) -> None:
        self.tree: StudyTree | None = None
        self.result_for = result_for

    def attach(self, tree: StudyTree) -> None:
        self.tree = tree
        # right after the name, so it is seen without scrolling sideways (the tree sizes it to
        # its text as results arrive)
        header = tree.header()
        header.moveSection(header.visualIndex(AI_COLUMN), 1)

    def update_paths(self, paths: list[str]) -> None:
        """New results for ``paths`` (a GUI batch's rows, as ``AIState.batch_listeners`` hear)."""
        for path in paths:
            self.update_path(path)

    def update_path(self, path: str) -> None:
        if self.tree is None:
            return
        item = self.tree.instance_item(path)
        if item is None:
            return
        pred = self.result_for(path)
        if pred is None:
            item.setText(AI_COLUMN, "")
            item.setToolTip(AI_COLUMN, "")
        elif pred.scored:
            item.setText(AI_COLUMN, f"{pred.probability * 100:.0f} %"
                         + (" flagged" if pred.flagged else ""))
            item.setForeground(AI_COLUMN, state_brush(bool(pred.flagged)))
            item.setToolTip(AI_COLUMN, tip(f"{pred.state_text}; {pred.model_label}"))
        else:
            item.setText(AI_COLUMN, "not scored")
            item.setForeground(AI_COLUMN, state_brush(None))
            item.setToolTip(AI_COLUMN, tip(pred.state_text))
        self._update_study(item)

    def refresh(self) -> None:
        if self.tree is None:
            return
        for item in list(self.tree.iter_instance_items()):
            inst = item.data(NAME, INSTANCE_ROLE)
            if inst is not None:
                self.update_path(inst.path)

    def _update_study(self, instance_item: Any) -> None:
        series = instance_item.parent()
        study = series.parent() if series is not None else None
        if study is None:
            return
        best = None
        for s in range(study.childCount()):
            ser = study.child(s)
            for i in range(ser.childCount()):
                inst = ser.child(i).data(NAME, INSTANCE_ROLE)
                pred = self.result_for(inst.path) if inst is not None else None
                if pred is not None and pred.scored and (best is None
                                                         or pred.probability > best.probability):
                    best = pred
        if best is None:
            study.setText(AI_COLUMN, "")
            return
        study.setText(AI_COLUMN, f"max {best.probability * 100:.0f} %"
                      + (" flagged" if best.flagged else ""))
        study.setForeground(AI_COLUMN, state_brush(bool(best.flagged)))
        study.setToolTip(AI_COLUMN, "Study state: the highest probability of its scored images")
