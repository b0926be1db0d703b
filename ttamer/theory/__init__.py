"""The theory: the objects the proofs talk about, built and checked.

* :mod:`ttamer.theory.adversarial` -- instances on which no recall is arbitrarily worse (the
  book's chapter *No recall*);
* :mod:`ttamer.theory.aggregation` -- states aggregated into meta-states;
* :mod:`ttamer.theory.frontier` -- the error–cost frontier swept over ``λ`` (the book's
  chapter *The frontier*);
* :mod:`ttamer.theory.synthetic` -- random instances for tests and synthetic studies.

The theory imports the core and the solvers, never early exit.
"""
