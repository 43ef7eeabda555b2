"""Test support shared by tests/, bench/ and tools/, imported as a package from a checkout:
``from tests.support.dicom_factory import make_dataset`` (pytest puts the checkout root on
``sys.path``; run bench and tool scripts as ``python -m bench.bench_decode`` from the root).

* :mod:`.dicom_factory` -- synthetic DICOM datasets and sample files;
* :mod:`.model_fixture` -- a random-weight model directory in the real format;
* :mod:`.gate_support` -- a random-weight model with a controlled input gate (issue 16);
* :mod:`.shared_data` -- the real data in ``../shared/data`` (skips when absent);
* :mod:`.fuzzing` -- the DICOM fuzzer behind ``tools/fuzz_campaign.py`` and the short fuzz test.
"""
