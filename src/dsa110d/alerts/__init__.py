"""Alerting: rules over the pipeline's state, deduplicated across daemons, sent to sinks.

* :mod:`~dsa110d.alerts.rules` — pure functions from :class:`Facts` to conditions.
* :mod:`~dsa110d.alerts.sinks` — the log, a webhook and e-mail, off the event loop.
* :mod:`~dsa110d.alerts.engine` — :class:`AlertEngine`, the periodic task the ServiceManager
  runs: gather facts, evaluate, claim each transition in Redis
  (:mod:`dsa110d.state.alerts`), deliver what this daemon won.
"""
