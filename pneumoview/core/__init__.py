"""Pure-Python core of PneumoView: no Qt import is allowed anywhere below this package."""
