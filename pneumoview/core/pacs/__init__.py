"""The PACS: DICOM nodes, DIMSE (pynetdicom) and DICOMweb (dicomweb-client).

* :mod:`.nodes` - a node as the user writes it (``dicom://AET@HOST:PORT``,
  ``dicom+tls://...``, ``https://HOST/PATH``), parsed and checked;
* :mod:`.dimse` - C-ECHO, C-STORE, C-FIND and C-GET as an SCU;
* :mod:`.web` - STOW-RS, QIDO-RS and WADO-RS;
* :mod:`.scp` - a Storage SCP (``pneumoview listen``) that files what it receives;
* :mod:`.incidents` - refused objects and badly ended associations, as report rows;
* :mod:`.audit` - the audit log: what was received, scored and sent, never patient data;
* :mod:`.transfer` - the protocol-neutral calls the commands and the GUI use.

Every call has a time limit and a ``cancel`` callable polled between messages; errors are
:class:`PacsError` naming the node, never a traceback.
"""
