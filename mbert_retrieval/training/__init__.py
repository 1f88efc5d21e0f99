"""Training pieces behind ``mbert-retrieval train`` (the flow itself is ``flows/train.py``).

- ``model``: the model to train (a ``SentenceTransformer`` or a ColBERT ``MultiVectorEncoder``);
- ``data``: the recipe's training rows;
- ``losses``: the recipe's loss names mapped onto sentence-transformers' dense and multi-vector losses;
- ``arguments``: the trainer arguments a recipe asks for (device, precision, schedule, prompts);
- ``trainer``: the trainer (checkpoints marked complete, then rotated) and the evaluator during training;
- ``checkpoints``: completeness markers, quarantine of half-written checkpoints, ``--resume``;
- ``card``: the model card (``README.md``) and the eval numbers recorded into it later.
"""
