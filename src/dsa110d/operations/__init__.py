"""What ``dsa110ctl`` does, as functions a test (or a notebook) can call without a shell.

``cli/ctl*.py`` only parse arguments and print; everything else lives here, one module per job:

* :mod:`~dsa110d.operations.session` opens the state server for a command;
* :mod:`~dsa110d.operations.status` reads the service registry (``status``, ``health``);
* :mod:`~dsa110d.operations.queues` reads stream statistics and handles dead letters;
* :mod:`~dsa110d.operations.records` lists sets, blocks and candidates;
* :mod:`~dsa110d.operations.analysis` asks the variability analyzer for a full recompute;
* :mod:`~dsa110d.operations.processes` starts, stops and restarts daemons, through systemd
  (:mod:`~dsa110d.operations.systemd`) when the units are installed and systemd runs, else as
  background processes (:mod:`~dsa110d.operations.background`), both behind the interface of
  :mod:`~dsa110d.operations.backend`.

Every function raises only :class:`~dsa110d.errors.DSA110Error` subclasses (one line each), so
the CLI can map them to its documented exit codes.
"""
