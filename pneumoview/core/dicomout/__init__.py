"""AI results as DICOM objects: a TID 1500 Structured Report and a Secondary Capture.

What a hospital's PACS expects back from an AI (in the style of the IHE AI Results profile):

* :mod:`.sr` - a Comprehensive SR per scored image: the calibrated probability as a NUM item
  (a highdicom ``Measurement`` in a TID 1501 group), the flag state as a qualitative evaluation,
  the operating point, the algorithm's identity (name, version, weights sha256, ``model_id``),
  the input gate's result when there is one, the source image as evidence; UNVERIFIED and
  marked not for diagnostic use;
* :mod:`.sc` - a Secondary Capture of the film with the CAM, a colour bar and a caption burned
  in (:mod:`.picture` composes the pixels);
* :mod:`.output` - writes them as Part-10 files named by SOP Instance UID, private to the user,
  never into a scanned folder; :mod:`.export` turns a finished report into these objects.

Both objects belong to the source's study (its patient and study modules are copied) in new
series with new UIDs. Not-scored images get no objects: a PACS user sees no AI result for them,
rather than an object that could be mistaken for one.
"""
