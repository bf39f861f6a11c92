"""The ``hnet`` command line: the only code that writes to the terminal."""
