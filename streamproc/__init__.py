"""streamproc package."""
