"""Who trains what, and when: runs queued, resumed and cancelled; the worker that claims them, its scheduler and its
runners (local processes, Ray jobs); the estimates of a run's time and memory and the queue's times.

May import core.results, core.training, core.data, core.store and core.words."""
