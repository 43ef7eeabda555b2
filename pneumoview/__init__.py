"""PneumoView: a chest X-ray DICOM viewer with a bundled pneumonia classifier."""

__version__ = "0.1.0"
