"""Model processes: the only code that imports torch and funasr. The supervisor imports `protocol` alone."""
