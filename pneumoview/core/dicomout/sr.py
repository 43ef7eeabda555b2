"""The Structured Report of one AI result (TID 1500 Measurement Report, highdicom).

Layout (what a PACS or a reader of the SR finds):

* root: TID 1500 "Imaging Measurement Report", procedure "Plain chest X-ray", the observer is
  the device (PneumoView, with the model as its model name), the source image in the
  Image Library;
* one TID 1501 group: finding type Pneumonia, the algorithm (TID 4019: name, version and the
  parameters weights sha256, ``model_id``, threshold), a NUM "Probability" equal to the
  report's probability (unit UCUM "1", a fraction), a NUM "Operating point threshold",
  qualitative evaluations for the flag state, the operating point and the input gate, the
  source image (and frame) as the group's source, and the "not for diagnostic use" comment;
* document: Comprehensive SR, COMPLETE, UNVERIFIED, PRELIMINARY-free; the evidence (the source
  image) in CurrentRequestedProcedureEvidenceSequence; the source's patient and study.
"""

from __future__ import annotations

from datetime import datetime

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from pneumoview import __version__
from pneumoview.core.dicomout import codes
from pneumoview.core.dicomout.result import AIResult, quiet_names, reference_header

MANUFACTURER = "PneumoView"
NOT_FOR_DIAGNOSTIC_USE = "NOT FOR DIAGNOSTIC USE"
DISCLAIMER = (f"{NOT_FOR_DIAGNOSTIC_USE}. Research software: an unverified AI result that a "
              "clinician has not reviewed.")
SR_SERIES_DESCRIPTION = "PneumoView AI result (not for diagnostic use)"
#: Series numbers of the objects (the source's series keep theirs; 9xx are out of their way).
SR_SERIES_NUMBER = 901


def device_uid(model_id: str) -> UID:
    """A UID for the observing device, the same for every result of one model."""
    return generate_uid(entropy_srcs=["pneumoview-device", model_id])


def algorithm_parameters(result: AIResult) -> list[str]:
    """TID 4019 Algorithm Parameters (TEXT items): ``name=value`` for what identifies the
    result's model and operating point."""
    model = result.model
    return [f"weights_sha256={model.weights_sha256}", f"model_id={model.model_id}",
            f"threshold={result.threshold:.6f}"]


def _algorithm(result: AIResult) -> hd.sr.AlgorithmIdentification:
    model = result.model
    return hd.sr.AlgorithmIdentification(
        name=model.name, version=model.version, family=codes.ALGORITHM_FAMILY,
        parameters=algorithm_parameters(result))


def _measurements(result: AIResult, source: hd.sr.SourceImageForMeasurement,
                  algorithm: hd.sr.AlgorithmIdentification) -> list[hd.sr.Measurement]:
    probability = hd.sr.Measurement(name=codes.PROBABILITY, value=float(result.probability),
                                    unit=codes.UNIT_FRACTION, algorithm_id=algorithm,
                                    referenced_images=[source])
    threshold = hd.sr.Measurement(name=codes.THRESHOLD, value=float(result.threshold),
                                  unit=codes.UNIT_FRACTION, algorithm_id=algorithm)
    return [probability, threshold]


def _evaluations(result: AIResult) -> list[hd.sr.QualitativeEvaluation]:
    state = codes.FLAGGED if result.flagged else codes.NOT_FLAGGED
    point = codes.OPERATING_POINTS.get(result.operating_point or "default",
                                       codes.OPERATING_POINTS["user"])
    out = [hd.sr.QualitativeEvaluation(codes.FLAG_STATE, state),
           hd.sr.QualitativeEvaluation(codes.OPERATING_POINT, point)]
    if result.gate:
        verdict = codes.GATE_OVERRIDDEN if "despite" in result.gate else codes.GATE_PASSED
        out.append(hd.sr.QualitativeEvaluation(codes.INPUT_GATE, verdict))
    return out


def _comments(result: AIResult) -> list[hd.sr.TextContentItem]:
    texts = [DISCLAIMER,
             f"{result.state_text} at threshold {result.threshold:.6f} "
             f"(probability {result.probability:.6f}); model {result.model.label}, "
             f"model_id {result.model.model_id}"]
    if result.gate:
        texts.append(f"Input gate: {result.gate}")
    return [hd.sr.TextContentItem(name=codes.COMMENT, value=t[:1024],
                                  relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
            for t in texts]


def _group(result: AIResult, header: Dataset) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    frames = [result.frame + 1] if int(header.get("NumberOfFrames", 1) or 1) > 1 else None
    source = hd.sr.SourceImageForMeasurement(header.SOPClassUID, header.SOPInstanceUID, frames)
    group_source = hd.sr.SourceImageForMeasurementGroup(header.SOPClassUID,
                                                        header.SOPInstanceUID, frames)
    algorithm = _algorithm(result)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(),
                                                     identifier="PneumoView pneumonia score"),
        finding_type=codes.FINDING, algorithm_id=algorithm,
        measurements=_measurements(result, source, algorithm),
        qualitative_evaluations=_evaluations(result), source_images=[group_source])
    group[0].ContentSequence.extend(_comments(result))
    return group


def _observation_context(result: AIResult) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(result.model.model_id), name=f"PneumoView {__version__}",
        manufacturer_name=MANUFACTURER, model_name=result.model.label[:64])
    return hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept.from_code(codes.DEVICE),
        observer_identifying_attributes=device))


@quiet_names()
def build_sr(result: AIResult, header: Dataset, path: str = "",
             now: datetime | None = None) -> hd.sr.ComprehensiveSR:
    """The SR of ``result`` for the source image whose header is ``header`` (read from
    ``path``, named in errors). New series and instance UIDs; the source's study."""
    header = reference_header(header, path)
    report = hd.sr.MeasurementReport(
        observation_context=_observation_context(result), procedure_reported=codes.PROCEDURE,
        imaging_measurements=[_group(result, header)], title=codes.REPORT_TITLE)
    sr = hd.sr.ComprehensiveSR(
        evidence=[header], content=report[0], series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
        series_description=SR_SERIES_DESCRIPTION)
    _finish(sr, now or datetime.now())
    return sr


def _finish(ds: Dataset, now: datetime) -> None:
    """What highdicom leaves to the caller: software version, coding scheme, content time."""
    ds.SoftwareVersions = __version__
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    scheme = Dataset()
    scheme.CodingSchemeDesignator = codes.SCHEME
    scheme.CodingSchemeName = codes.SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    ds.CodingSchemeIdentificationSequence = [scheme]
