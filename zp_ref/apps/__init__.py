"""Applications on top of the library: the ``zp-ref`` command line (:mod:`.cli`), its
``demo`` job (:mod:`.demo`), the benchmark suite (:mod:`.bench`) and the training
study (:mod:`.study`, needs torch). Only apps import apps; no library module does."""
