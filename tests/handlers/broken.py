"""A handler module whose import fails, for the boot-error tests."""

raise RuntimeError("this module cannot be imported")
