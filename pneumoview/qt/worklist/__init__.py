"""The triage worklist dock, the review keys and the calibration dialog."""
