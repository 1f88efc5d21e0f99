"""The paper report (``mbert-retrieval report``): our results beside the ModernBERT paper's
(``reference``), with bootstrap intervals and paired tests, and its chart (``plots``)."""
