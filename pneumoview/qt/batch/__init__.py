"""File > Batch Flag Folder: the controller, the dock's panel and table, the background job."""
