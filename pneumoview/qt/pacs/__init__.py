"""The PACS in the viewer: File > Open from PACS... (query, retrieve) and File > Save AI Result
as DICOM... Network work runs on the window's WorkRunner (lane ``pacs``), never the GUI thread."""
