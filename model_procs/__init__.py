"""Model processes: the only code that imports torch and funasr (inside the worker, the engines and the model
generator). The supervisor imports from here only what needs neither (`sources`, `wheels`)."""
