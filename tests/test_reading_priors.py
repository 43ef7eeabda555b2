"""Compare with prior: which open study is the current one's prior (no Qt)."""

from __future__ import annotations

import dataclasses

from pneumoview.core.indexer import Instance
from pneumoview.core.reading.priors import NoPrior, Prior, find_prior, study_moment

BLANK = {f.name: "" for f in dataclasses.fields(Instance)}


def inst(study: str, date: str, time: str = "", patient: str = "P1", series: int = 1,
         number: int = 1) -> Instance:
    values = dict(BLANK)
    values.update(path=f"/d/{patient}/{study}/{series}/{number}.dcm", patient_id=patient,
                  study_instance_uid=study, study_date=date, study_time=time,
                  series_instance_uid=f"{study}.{series}", series_number=series,
                  instance_number=number, rows=8, columns=8, n_frames=1, file_size=0, mtime_ns=0)
    return Instance(**values)


def test_the_most_recent_earlier_study_of_the_same_patient_is_the_prior():
    current = inst("s3", "20240301")
    others = [inst("s1", "20200101"), inst("s2", "20230615"), inst("s4", "20250101"),
              inst("x", "20240101", patient="P2"), current]
    prior = find_prior(current, others)
    assert isinstance(prior, Prior)
    assert prior.study_instance_uid == "s2"


def test_the_prior_shows_its_first_series_first_image():
    current = inst("s2", "20240301")
    members = [inst("s1", "20200101", series=3, number=1), inst("s1", "20200101", series=1,
                                                                 number=2),
               inst("s1", "20200101", series=1, number=1)]
    prior = find_prior(current, [current, *members])
    assert isinstance(prior, Prior)
    assert prior.instance.path == "/d/P1/s1/1/1.dcm"


def test_same_day_needs_both_times_to_order_studies():
    current = inst("pm", "20240301", "1530")
    morning = inst("am", "20240301", "08:15:00")
    assert find_prior(current, [morning, current]).study_instance_uid == "am"
    later = inst("late", "20240301", "1600")
    assert find_prior(current, [later, current]) is NoPrior.NONE_EARLIER
    assert find_prior(inst("c", "20240301"), [morning]) is NoPrior.NONE_EARLIER


def test_no_prior_reasons():
    assert find_prior(inst("a", "20240101", patient=" "), [inst("b", "20200101", patient=" ")]) \
        is NoPrior.NO_PATIENT_ID
    assert find_prior(inst("a", ""), [inst("b", "20200101")]) is NoPrior.NO_STUDY_DATE
    assert find_prior(inst("a", "20240101"), [inst("b", "bad")]) is NoPrior.NONE_EARLIER
    assert find_prior(inst("a", "20240101"), []) is NoPrior.NONE_EARLIER


def test_study_moment_reads_old_and_partial_forms():
    assert study_moment("2024.03.01", "08:15") == ("20240301", "081500.000000")
    assert study_moment("20240301", "081500.5") == ("20240301", "081500.500000")
    assert study_moment("20240301", "") == ("20240301", None)
    assert study_moment("2024", "0815") is None
