"""Command-line interface: ``edgetrgl train | bench | models | datasets``."""
