"""The built-in family: espeak-ng, run in the server's own interpreter."""
