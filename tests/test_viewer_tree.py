"""The study tree keeps its order and counts whatever order and batches the files arrive in."""

from __future__ import annotations

import dataclasses
import random

import pytest

pytest.importorskip("PySide6")

from pneumoview.core.indexer import Instance
from pneumoview.qt import studytree
from pneumoview.qt.studytree import StudyTree

BLANK = {f.name: "" for f in dataclasses.fields(Instance)}


def make(p: int, s: int, r: int, i: int) -> Instance:
    values = dict(BLANK)
    values.update(path=f"/data/p{p}/s{s}/r{r}/i{i}.dcm", sop_instance_uid=f"1.{p}.{s}.{r}.{i}",
                  instance_number=i + 1, patient_id=f"ID{p:03d}", patient_name=f"Name^{p:03d}",
                  study_instance_uid=f"1.{p}.{s}", study_date=f"2020010{s + 1}",
                  series_instance_uid=f"1.{p}.{s}.{r}", series_number=r + 1, modality="CR",
                  rows=10, columns=10, n_frames=1, file_size=0, mtime_ns=0)
    return Instance(**values)


def test_random_arrival_gives_sorted_tree_and_right_counts(qtbot):
    tree = StudyTree()
    qtbot.addWidget(tree)
    instances = [make(p, s, r, i) for p in range(40) for s in range(2) for r in range(3)
                 for i in range(4)]
    shuffled = instances[:]
    random.Random(7).shuffle(shuffled)
    pos = 0
    rng = random.Random(3)
    while pos < len(shuffled):
        n = rng.randint(1, 60)
        assert tree.add_instances(shuffled[pos:pos + n]) == len(shuffled[pos:pos + n])
        pos += n
    assert tree.add_instances(shuffled[:10]) == 0  # duplicates are ignored
    assert tree.instance_count() == len(instances)
    assert [inst.path for inst in tree.instances()] == [inst.path for inst in instances]
    assert tree.topLevelItemCount() == 40
    patient = tree.topLevelItem(0)
    assert patient.text(studytree.COUNT) == "2 st"
    assert patient.child(0).text(studytree.COUNT) == "3 se"
    assert patient.child(0).child(0).text(studytree.COUNT) == "4 im"


def test_rows_arriving_in_a_large_tree_come_collapsed(qtbot):
    tree = StudyTree()
    qtbot.addWidget(tree)
    instances = [make(p, 0, 0, i) for p in range(60) for i in range(10)]
    for start in range(0, len(instances), 50):
        tree.add_instances(instances[start:start + 50])
    expanded = [tree.topLevelItem(i).isExpanded() for i in range(tree.topLevelItemCount())]
    limit = studytree.AUTO_EXPAND_LIMIT // 10
    assert all(expanded[:limit]) and not any(expanded[limit + 5:])


def test_navigation_across_series(qtbot):
    tree = StudyTree()
    qtbot.addWidget(tree)
    instances = [make(p, 0, r, i) for p in range(2) for r in range(2) for i in range(2)]
    tree.add_instances(instances)
    assert tree.topLevelItem(0).isExpanded()  # a small tree is shown expanded
    seen = []
    tree.instanceSelected.connect(lambda inst: seen.append(inst.path))
    assert tree.step_instance(1)
    assert seen[-1] == instances[0].path
    assert tree.step_series(1) and seen[-1] == instances[2].path
    assert tree.step_series(1) and seen[-1] == instances[4].path
    assert tree.step_instance(-1) and seen[-1] == instances[3].path
    tree.select_instance(instances[-1].path)
    assert not tree.step_instance(1) and not tree.step_series(1)
    tree.select_instance(instances[-1].path)  # re-selecting the current row shows it again
    assert seen[-1] == instances[-1].path and seen.count(instances[-1].path) == 2
