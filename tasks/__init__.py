"""seqio tasks of t5rank; registered on import of `t5rank.tasks`."""
