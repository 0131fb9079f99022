"""Side-by-side speed, accuracy, size and memory of every model variant, on one machine.

``measure`` times one variant, ``supervision`` runs each in a fresh child process,
``report`` turns the results into ratios, the pick and the Pareto plot, and ``run`` ties them
together for the benchmark stage. Nothing is imported here, so a variant's child process loads
only what measuring needs.
"""
