"""Experiment suites on the career env: the stress tests (``rlaudit stress``) and the benchmark matrix
(``rlaudit bench``). They record runs with :mod:`rlaudit.agents`, audit them with the analyser and
summarise with its statistics; nothing in the core imports them."""
