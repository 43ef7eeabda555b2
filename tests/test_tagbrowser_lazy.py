"""The tag browser fills its table only when it is on screen: behind another tab, filling it
would only delay what is (the image and the AI's answer share the GUI thread with it)."""

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")
pytestmark = pytest.mark.gui

from pydicom.dataset import Dataset  # noqa: E402
from PySide6.QtWidgets import QLabel, QTabWidget  # noqa: E402

from pneumoview.qt.tagbrowser import TagBrowser  # noqa: E402


def _dataset(name: str) -> Dataset:
    ds = Dataset()
    ds.PatientName = name
    ds.Modality = "DX"
    return ds


def _values(browser: TagBrowser) -> list[str]:
    tree = browser.tree
    return [tree.topLevelItem(i).text(3) for i in range(tree.topLevelItemCount())]


def _behind_another_tab(qtbot) -> tuple[QTabWidget, TagBrowser]:
    """A tag browser in the second tab of a shown tab widget (the first tab is current)."""
    tabs = QTabWidget()
    qtbot.addWidget(tabs)
    tabs.addTab(QLabel("AI"), "AI")
    browser = TagBrowser()
    tabs.addTab(browser, "Tags")
    tabs.show()
    qtbot.waitExposed(tabs)
    return tabs, browser


def test_hidden_browser_fills_when_shown_with_the_latest_dataset(qtbot) -> None:
    tabs, browser = _behind_another_tab(qtbot)
    assert not browser.isVisible()

    browser.set_dataset(_dataset("First^Patient"))
    browser.set_dataset(_dataset("Second^Patient"))
    assert _values(browser) == []  # nothing built behind the other tab

    tabs.setCurrentWidget(browser)
    qtbot.waitUntil(browser.isVisible)
    assert "Second^Patient" in _values(browser) and "First^Patient" not in _values(browser)

    browser.set_dataset(_dataset("Third^Patient"))  # on screen: the old rows go at once
    assert _values(browser) == []
    qtbot.waitUntil(lambda: "Third^Patient" in _values(browser), timeout=2000)
    browser.set_dataset(None)
    assert _values(browser) == []


def test_stepping_through_files_fills_the_table_once_for_the_last(qtbot, monkeypatch) -> None:
    """Arrow keys through films: each film's header arrives 30-50 ms after the last. Filling
    the table for each would cost the GUI thread 4-10 ms per film while the reader waits for
    the image and the AI's answer; the table is built once, for the film the reader stops
    at, and never shows one film's tags under the next one's image."""
    tabs, browser = _behind_another_tab(qtbot)
    tabs.setCurrentWidget(browser)
    qtbot.waitUntil(browser.isVisible)
    built: list[str] = []
    original = TagBrowser._add

    def counting_add(self, parent, ds):
        if parent is self.tree.invisibleRootItem():
            built.append(str(ds.PatientName))
        return original(self, parent, ds)

    monkeypatch.setattr(TagBrowser, "_add", counting_add)
    for i in range(5):
        browser.set_dataset(_dataset(f"Film{i}^Patient"))
        assert _values(browser) == []  # not the previous film's rows
        qtbot.wait(20)
    assert browser.fill_pending()  # what a screenshot waits for
    qtbot.waitUntil(lambda: "Film4^Patient" in _values(browser), timeout=2000)
    assert built == ["Film4^Patient"] and not browser.fill_pending()


def test_search_filter_applies_to_a_table_filled_late(qtbot) -> None:
    tabs, browser = _behind_another_tab(qtbot)
    browser.search.setText("modality")
    browser.set_dataset(_dataset("Some^Patient"))
    tabs.setCurrentWidget(browser)
    qtbot.waitUntil(browser.isVisible)
    tree = browser.tree
    shown = [tree.topLevelItem(i).text(3) for i in range(tree.topLevelItemCount())
             if not tree.topLevelItem(i).isHidden()]
    assert shown == ["DX"]
