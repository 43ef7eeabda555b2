"""The coded concepts the AI result objects use: one home, so the SR and its readers agree.

Standard codes (DCM, SCT, UCUM) where one means what we say; the rest come from PneumoView's
private coding scheme :data:`SCHEME` (a ``99``-prefixed designator, as PS3.16 reserves for
private schemes), which each SR declares in its Coding Scheme Identification Sequence.
"""

from __future__ import annotations

from pydicom.sr.coding import Code

SCHEME = "99PNEUMOVIEW"
SCHEME_NAME = "PneumoView AI result codes"

#: TID 1500 title, and what was examined.
REPORT_TITLE = Code("126000", "DCM", "Imaging Measurement Report")
PROCEDURE = Code("399208008", "SCT", "Plain chest X-ray")
FINDING = Code("233604007", "SCT", "Pneumonia")

#: The NUM items: the calibrated probability and the operating point compared with it.
PROBABILITY = Code("122157", "DCM", "Probability")  # of the group's finding: pneumonia
THRESHOLD = Code("PV0002", SCHEME, "Operating point threshold")
UNIT_FRACTION = Code("1", "UCUM", "no units")

#: The qualitative evaluations: the flag state, the operating point's name, the input gate.
FLAG_STATE = Code("PV0003", SCHEME, "AI flag state")
FLAGGED = Code("PV0004", SCHEME, "Flagged: possible pneumonia")
NOT_FLAGGED = Code("PV0005", SCHEME, "Not flagged")
OPERATING_POINT = Code("PV0006", SCHEME, "Operating point")
INPUT_GATE = Code("PV0007", SCHEME, "Input gate result")
GATE_PASSED = Code("PV0008", SCHEME, "Input accepted by the gate")
GATE_OVERRIDDEN = Code("PV0009", SCHEME, "Scored despite a gate refusal")

#: TEXT items: the statement that travels with every result, and free-text details.
COMMENT = Code("121106", "DCM", "Comment")

#: The observer type of the observation context (TID 1002).
DEVICE = Code("121007", "DCM", "Device")

#: The algorithm family (TID 4019).
ALGORITHM_FAMILY = Code("123110", "DCM", "Artificial Intelligence")

#: Operating point names (issue 18's populations) as codes; anything else is "user threshold".
OPERATING_POINTS = {
    "default": Code("PV0011", SCHEME, "Model default threshold"),
    "adult": Code("PV0012", SCHEME, "Adult operating point"),
    "paediatric": Code("PV0013", SCHEME, "Paediatric operating point"),
    "user": Code("PV0014", SCHEME, "User-chosen threshold"),
}
