"""Distribution = placement + partition + transport (DESIGN.md rule 4).

``partition.py`` splits a pruned graph into one subgraph per task joined by _Send/_Recv;
``task.py`` runs partitions in a task (in this process or a Ray actor); ``session.py`` is the
master that runs a step across tasks; ``inprocess.py`` and ``ray_backend.py`` are transports.
"""
