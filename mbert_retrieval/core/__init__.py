"""Helpers every other package uses and that import nothing of ours beyond ``core``: one-line user
errors, plain data types, atomic files and folders, the output lock, library versions, checkpoint
safety checks and the ``torchrun`` context."""
